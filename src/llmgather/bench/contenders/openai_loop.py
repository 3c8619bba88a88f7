"""A synchronous loop with the `openai` SDK: one request after another."""

from openai import OpenAI


def main(prompts, *, base_url, max_tokens, **_):
    client = OpenAI(base_url=base_url + "/v1", api_key="bench")
    answers = []
    for prompt in prompts:
        response = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
        )
        answers.append(response.choices[0].message.content)
    return answers
