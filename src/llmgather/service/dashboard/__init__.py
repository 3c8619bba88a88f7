"""The dashboard at `/`: one page (`index.html`, with `dashboard.css` and `dashboard.js`
inlined into it when served; no build step, no CDN) fed by server-sent events of `feed`'s
snapshots."""
