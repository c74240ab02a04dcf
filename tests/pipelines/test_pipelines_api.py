"""/api/pipelines answers bad requests with the right 4xx, and lists and filters pipelines."""

from __future__ import annotations

from tests.pipelines.world import PipelineWorld


async def test_requests_that_cannot_make_a_pipeline_are_4xx_with_a_reason(
    world: PipelineWorld,
) -> None:
    await world.start()
    key = await world.ticket()
    missing = await world.api("POST", "/api/pipelines", {"ticket": "ACME-999"}, status=404)
    assert "not in the JIRA mirror" in missing["error"]["message"]
    bad_key = await world.api("POST", "/api/pipelines", {"ticket": "acme 1"}, status=400)
    assert bad_key["error"]["code"] == "invalid_field"
    unknown = await world.api(
        "POST", "/api/pipelines", {"ticket": key, "cycle_type": "nope"}, status=400
    )
    assert unknown["error"]["code"] == "invalid_pipeline"
    elsewhere = await world.api(
        "POST", "/api/pipelines", {"ticket": key, "repository": "octo/none"}, status=400
    )
    assert "not registered" in elsewhere["error"]["message"]
    extra = await world.api("POST", "/api/pipelines", {"ticket": key, "x": 1}, status=400)
    assert "unknown field `x`" in extra["error"]["message"]
    assert (await world.api("GET", "/api/pipelines/77", status=404))["error"]["code"] == "not_found"
    step = await world.api("POST", "/api/pipelines/77/steps/1/approve", status=404)
    assert step["error"]["code"] == "not_found"


async def test_pipelines_are_listed_newest_first_and_filtered(world: PipelineWorld) -> None:
    await world.start()
    key = await world.ticket()
    other = await world.ticket(summary="Another change")
    first = await world.create(key, cycle_type="spike", start=False)
    second = await world.create(other, cycle_type="spike", start=False)
    listed = (await world.api("GET", "/api/pipelines"))["pipelines"]
    assert [p["id"] for p in listed] == [second["id"], first["id"]]
    by_ticket = (await world.api("GET", f"/api/pipelines?ticket={key}"))["pipelines"]
    assert [p["id"] for p in by_ticket] == [first["id"]]
    await world.api("POST", f"/api/pipelines/{first['id']}/cancel", {"reason": "not now"})
    cancelled = (await world.api("GET", "/api/pipelines?status=cancelled"))["pipelines"]
    assert [p["id"] for p in cancelled] == [first["id"]]
    both = (await world.api("GET", "/api/pipelines?status=cancelled,created"))["pipelines"]
    assert len(both) == 2
    wrong = await world.api("GET", "/api/pipelines?status=sleeping", status=400)
    assert "unknown status" in wrong["error"]["message"]
    again = await world.api("POST", f"/api/pipelines/{first['id']}/start", status=409)
    assert again["state"] == "cancelled"


async def test_every_pipeline_route_needs_the_token(world: PipelineWorld) -> None:
    client = await world.start()
    for method, path in [("GET", "/api/pipelines"), ("POST", "/api/pipelines"),
                         ("GET", "/api/pipelines/1"), ("POST", "/api/pipelines/1/pause"),
                         ("POST", "/api/pipelines/1/steps/1/feedback"),
                         ("POST", "/api/pipelines/1/risks/1/acknowledge")]:  # fmt: skip
        response = await client.request(method, path)
        assert response.status == 401, path
