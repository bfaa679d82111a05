"""What Cloud Run, Cloud Logging and Cloud Monitoring accept, from Google's documentation and the
provider's issue tracker (one source per rule). Used by the policy pack and tests/infra."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..common.rules import Res, Rule, as_list, get, in_range, is_num

SERVICE = "gcp:cloudrunv2/service:Service"
POLICY = "gcp:monitoring/alertPolicy:AlertPolicy"
SLEEP = "time:index/sleep:Sleep"

REVISION_SOURCE = "https://github.com/hashicorp/terraform-provider-google/issues/13410"
METRIC_PROPAGATION_SOURCE = "https://github.com/hashicorp/terraform-provider-google/issues/11102"
METRIC_PROPAGATION_MIN_S = 120
PROBES_DOC = "https://cloud.google.com/run/docs/configuring/healthchecks"
CONCURRENCY_DOC = "https://cloud.google.com/run/docs/about-concurrency"
CPU_DOC = "https://cloud.google.com/run/docs/configuring/cpu-allocation"
PULL_DOC = "https://cloud.google.com/artifact-registry/docs/integrate-cloud-run#permissions"


def _revision(res: Res, _: list[Res]) -> Iterable[str]:
    if get(res.props, "template", "revision"):
        yield "fixed template.revision: Cloud Run rejects an existing name (409), e.g. on rollback"


def _probes(res: Res, _: list[Res]) -> Iterable[str]:
    for c in as_list(get(res.props, "template", "containers")):
        for kind in ("startupProbe", "livenessProbe"):
            p = get(c, kind)
            if not isinstance(p, Mapping):
                continue
            period, timeout = p.get("periodSeconds"), p.get("timeoutSeconds")
            yield from in_range(period, 1, 240 if kind == "startupProbe" else 3600, f"{kind}.periodSeconds")
            yield from in_range(timeout, 1, 240, f"{kind}.timeoutSeconds")
            if is_num(period) and is_num(timeout) and timeout > period:
                yield f"{kind}.timeoutSeconds {timeout} > periodSeconds {period}"
            yield from in_range(p.get("initialDelaySeconds"), 0, 240, f"{kind}.initialDelaySeconds")


def _concurrency(res: Res, _: list[Res]) -> Iterable[str]:
    yield from in_range(get(res.props, "template", "maxInstanceRequestConcurrency"), 1, 1000, "concurrency")


def _cpu_idle(res: Res, _: list[Res]) -> Iterable[str]:
    warm = get(res.props, "template", "scaling", "minInstanceCount")
    for c in as_list(get(res.props, "template", "containers")):
        if is_num(warm) and warm >= 1 and get(c, "resources", "cpuIdle") is True:
            yield "request-based CPU (cpuIdle) with warm instances: background timers barely run between requests"


def _metric_wait(res: Res, all_: list[Res]) -> Iterable[str]:
    filters = [get(c, "conditionThreshold", "filter") for c in as_list(res.props.get("conditions"))]
    if not any(isinstance(f, str) and "logging.googleapis.com/user/" in f for f in filters):
        return
    sleeps = [r for r in all_ if r.typ == SLEEP and r.urn in res.deps]
    waited = [_seconds(r.props.get("createDuration")) for r in sleeps]
    if not any(w >= METRIC_PROPAGATION_MIN_S for w in waited):
        yield f"alert on a log-based metric created in the same run without a >= {METRIC_PROPAGATION_MIN_S}s wait"


def _seconds(duration: object) -> float:
    m = re.fullmatch(r"(\d+)(s|m)", duration) if isinstance(duration, str) else None
    return 0.0 if m is None else float(m.group(1)) * (60 if m.group(2) == "m" else 1)


def _agent_pull(res: Res, all_: list[Res]) -> Iterable[str]:
    members = [
        str(r.props.get("member"))
        for r in all_
        if r.typ == "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember"
        and r.props.get("role") == "roles/artifactregistry.reader"
    ]
    if not any("@serverless-robot-prod.iam.gserviceaccount.com" in m for m in members):
        yield "the Cloud Run service agent has no Artifact Registry Reader on the repository (pulls fail cross-project)"


RULES = [
    Rule("gcp-revision-name", (SERVICE,), _revision, REVISION_SOURCE),
    Rule("gcp-probe-limits", (SERVICE,), _probes, PROBES_DOC),
    Rule("gcp-concurrency", (SERVICE,), _concurrency, CONCURRENCY_DOC),
    Rule("gcp-cpu-idle-warm", (SERVICE,), _cpu_idle, CPU_DOC, advisory=True),
    Rule("gcp-log-metric-propagation", (POLICY,), _metric_wait, METRIC_PROPAGATION_SOURCE),
    Rule("gcp-service-agent-pull", (SERVICE,), _agent_pull, PULL_DOC),
]
