"""The manifest flow in a real headless Chromium, from the status page to the installation link.

biagent is opened as http://localhost:PORT and the GitHub fake answers at http://127.0.0.1:PORT:
two sites, so GitHub's redirect back is a cross-site navigation, on which Chromium does not send
the SameSite=Strict login cookie. The flow still finishes because the open callback only
bounces the browser to /setup/github/finish, a navigation of our own that carries the cookie
(the test checks both); and the page with GitHub's form runs under its Content-Security-Policy
(form-action).
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Request

from tests.browser import browser_page, skip_without_chromium
from tests.conftest import StartApp
from tests.fakes.github import FakeGitHub
from tests.helpers import API_TOKEN, make_settings
from web.keys import GITHUB_CONNECTION

pytestmark = skip_without_chromium


async def login_cookie_sent(requests: list[Request]) -> dict[str, bool]:
    """For each request to /setup/..., named by its last path part: was the cookie sent?"""
    return {
        request.url.split("?")[0].rsplit("/", 1)[1]: "biagent_token"
        in (await request.all_headers()).get("cookie", "")
        for request in requests
        if "/setup/" in request.url
    }


async def test_a_person_creates_the_app_from_the_status_page_in_a_browser(
    start_app: StartApp, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    settings = make_settings(
        tmp_path, github_webhook_secret=None, github_api_url=fake_github.base_url
    )
    client = await start_app(settings)
    base = f"http://localhost:{client.server.port}"
    async with browser_page() as page:
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        ours: list[Request] = []
        page.on(
            "request", lambda request: ours.append(request)
        )  # a function: a bound method is refused
        await page.goto(f"{base}/login?token={API_TOKEN}")
        await page.fill("#setup-organization input[name=name]", "biagent-browser")
        await page.fill("#setup-organization input[name=organization]", "acme")
        await page.click("#setup-organization button")
        await page.click("#to-github button")
        await page.click("#create")  # on GitHub's page: GitHub's redirect back is cross-site
        await page.wait_for_selector("#install", timeout=15_000)
        install = await page.get_attribute("#install", "href")
        cookies = await login_cookie_sent(ours)
    assert cookies == {"github": True, "callback": False, "finish": True}
    (created,) = fake_github.created_apps.values()
    assert install == f"https://github.com/apps/{created.slug}/installations/new"
    assert client.app[GITHUB_CONNECTION].credentials.owner == "acme"
    pages = [call.path for call in fake_github.calls if call.method == "POST"]
    assert pages[:2] == ["/organizations/acme/settings/apps/new", "/settings/apps/new/confirm"]
    assert [text for text in console if "Content Security Policy" in text] == []
