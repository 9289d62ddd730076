"""compose.yaml (checked as YAML: no Docker engine here): the default profile as it was, and the
`scaled` profile's two gateways behind nginx and two workers (docs/scaling.md)."""
import re

import yaml

from ..catalog import REPO

COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
NGINX_CONF = (REPO / "deploy" / "nginx.conf").read_text()


def profile(name: str | None) -> dict:
    return {n: s for n, s in SERVICES.items() if (s.get("profiles") or [None]) == [name]}


def test_the_default_profile_is_the_stack_it_was():
    default = profile(None)
    assert set(default) == {"postgres", "redis", "migrate", "gateway", "worker"}
    assert default["gateway"]["ports"] == ["8080:8080"]
    assert default["gateway"]["command"] == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert default["worker"]["command"] == ["worker"]


def test_the_scaled_profile_puts_two_gateways_behind_nginx_and_runs_two_workers():
    scaled = profile("scaled")
    assert set(scaled) == {"gateway-1", "gateway-2", "worker-1", "worker-2", "nginx"}
    app_env = SERVICES["gateway"]["environment"]
    for name in ("gateway-1", "gateway-2"):
        gateway = scaled[name]
        assert "ports" not in gateway, f"{name} publishes no host port: nginx is the way in"
        assert gateway["command"] == ["serve", "--host", "0.0.0.0", "--port", "8080"]
        assert gateway["environment"] == app_env  # the same PostgreSQL, Redis and secret
        assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("worker-1", "worker-2"):
        assert scaled[name]["command"] == ["worker"] and scaled[name]["environment"] == app_env
        assert "ports" not in scaled[name]
    nginx = scaled["nginx"]
    assert nginx["ports"] == ["8081:8080"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert {name: dep["condition"] for name, dep in nginx["depends_on"].items()} == {
        "gateway-1": "service_healthy", "gateway-2": "service_healthy"}


def test_nginx_conf_names_both_gateways_keeps_connections_and_passes_the_client_headers():
    upstream = re.search(r"upstream loyalty_gateways \{(.*?)\}", NGINX_CONF, re.S).group(1)
    assert re.findall(r"server (\S+)", upstream) == ["gateway-1:8080", "gateway-2:8080"]
    assert re.search(r"^\s*keepalive \d+;", upstream, re.M)
    for directive in ("proxy_pass http://loyalty_gateways;", "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
                      "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                      "proxy_set_header X-Request-Id $loyalty_request_id;", "listen 8080;"):
        assert directive in NGINX_CONF, directive
