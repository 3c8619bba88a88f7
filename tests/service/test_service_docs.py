"""`/docs` works with no internet: Swagger UI's script and stylesheet come from the service
itself (FastAPI's own page loads them from a CDN, and stays blank offline). Read over loopback,
and rendered in a real headless Chromium whose every request off 127.0.0.1 is refused."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import Route, async_playwright, expect

from llmgather import __version__
from llmgather.service import ServiceSettings
from tests.service.test_dashboard import CHROMIUM, CHROMIUM_ARGS, ON_CI
from tests.servicefixtures import serving


def settings(tmp_path: Path) -> ServiceSettings:
    return ServiceSettings(model=None, jobs_dir=tmp_path / "jobs")


async def test_the_docs_page_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    async with serving(settings(tmp_path)) as base_url, aiohttp.ClientSession() as http:
        async with http.get(base_url + "/docs") as response:
            assert response.status == 200
            page = await response.text()
        addresses = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page)
        assert addresses, page
        assert not [a for a in addresses if urlsplit(a).netloc], addresses  # no CDN
        for address in addresses:
            async with http.get(base_url + address) as asset:
                assert asset.status == 200, address
                assert len(await asset.read()) > 500, address
        async with http.get(base_url + "/docs/swagger-ui-bundle.js") as script:
            assert script.content_type in ("text/javascript", "application/javascript")
            assert "SwaggerUIBundle" in await script.text()


@pytest.mark.skipif(
    CHROMIUM is None and not ON_CI,
    reason="needs Debian's chromium on PATH (apt-get install chromium; .ci/run installs it)",
)
async def test_the_docs_render_in_chromium_with_no_internet(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI=true: chromium must be installed (see .ci/run)"
    refused: list[str] = []

    async def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort("internetdisconnected")

    async with serving(settings(tmp_path)) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.route("**/*", loopback_only)
            await page.goto(base_url + "/docs")
            title = page.locator(".swagger-ui .info .title")
            await expect(title).to_contain_text("llmgather", timeout=15_000)
            await expect(title).to_contain_text(__version__)
            # The schema's operations are listed: /generate among them.
            await expect(page.locator(".opblock-summary-path").first).to_be_visible()
            await expect(page.get_by_text("/generate", exact=True).first).to_be_visible()
        finally:
            await browser.close()
    assert refused == []
