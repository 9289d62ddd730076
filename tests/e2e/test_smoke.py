"""The first things a newcomer tries: is it up, what can it do, and does an error read well."""
from ..helpers import problem


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json()) == {"status": "ready", "database": "ok", "redis": "ok"}


async def test_openapi_documents_the_admin_api(client):
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "post" in spec["paths"]["/v1/members"]
    assert "Idempotency-Key" in {p["name"] for p in spec["paths"]["/v1/members"]["post"]["parameters"]}
    docs = await client.get("/docs")
    assert docs.status == 200 and "/v1/members" in await docs.text()


async def test_openapi_document_is_valid_and_lists_every_route(client):
    from openapi_spec_validator import validate

    spec = await (await client.get("/openapi.json")).json()
    validate(spec)
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    served = {(route.method, route.resource.canonical) for route in client.server.app.router.routes()
              if route.method != "HEAD"}
    assert served == documented


async def test_unknown_route_and_wrong_method_are_problems(client):
    await problem(await client.get("/v1/nowhere"), 404, "not_found")
    await problem(await client.delete("/healthz"), 405, "method_not_allowed")


async def test_member_round_trip(chain):
    created = await chain.new_member("13800138000", name="张三")
    assert created["display_name"] == "张*"
    assert created["phone"] == "138****8000"
    fetched = await chain.member(created["id"])
    assert fetched["balances"]["points"] == 0
    assert fetched["tier"]["code"] == "regular"
