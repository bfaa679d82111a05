"""Stack output names: one home for what every target (`infra/`) exports and what the readers look up.

Every serving stack, on every target, exports the `SERVING` outputs under these names (camelCase,
Pulumi's convention), plus `DASHBOARD` on every cloud (the local target's is Prometheus,
`METRICS_URL`). `infra/program.py` adds `TARGET` and `STACK_KIND`. Readers (`scripts/local-up.sh`,
`kaizen ci smoke-stack`, the preview comment, the retraining loop, tests and bench) use these names.
Pure constants and one helper: importing it loads nothing else.
"""

from __future__ import annotations

from typing import Any

# ---- every serving stack ------------------------------------------------------------------------
# Where predictions are asked: the base URL of the runtime's routes (local, Cloud Run, Container Apps;
# POST {endpointUrl}/predict), or the platform's scoring URL (SageMaker's invocations URL, signed with
# SigV4; Azure ML's scoring URI, with an Entra ID token).
ENDPOINT_URL = "endpointUrl"
IMAGE = "image"  # the digest-pinned reference served
IMAGE_DIGEST = "imageDigest"  # sha256:<64 hex> of IMAGE
MODEL_NAME = "modelName"
MODEL_VERSION = "modelVersion"
DASHBOARD = "dashboard"  # URL of the stack's dashboard in the cloud console (every cloud)
SERVING = (ENDPOINT_URL, IMAGE, IMAGE_DIGEST, MODEL_NAME, MODEL_VERSION)

# ---- every stack (infra/program.py) ---------------------------------------------------------------
TARGET = "target"
STACK_KIND = "stackKind"

# ---- the local target -----------------------------------------------------------------------------
METRICS_URL = "metricsUrl"  # Prometheus
REGISTRY_URL = "registryUrl"  # the OCI registry the image is pushed to
ALERTMANAGER_URL = "alertmanagerUrl"  # with kaizen:local.alerting
BATCH_ROWS = "batchRows"  # with kaizen:local.batch: the job's last run
BATCH_REJECTS = "batchRejects"
BATCH_ROWS_PER_SECOND = "batchRowsPerSecond"
BATCH_OUTPUT = "batchOutput"

# ---- cloud-specific outputs the readers look up -------------------------------------------------
SAGEMAKER_ENDPOINT = "endpointName"  # AWS: scored through the SageMaker runtime API (SigV4)
CLOUD_RUN_URI = "serviceUri"  # GCP: the ID token's audience
CONTAINER_APP_FQDN = "fqdn"  # Azure Container Apps
AZURE_ML_SCORING_URI = "scoringUri"  # Azure ML: scored with an Entra ID token
INGRESS = "ingress"  # GCP and Azure Container Apps: who can reach the endpoint


def serving(*, endpoint_url: Any, image: Any, image_digest: Any, model_name: Any, model_version: Any,
            dashboard: Any = None) -> dict[str, Any]:
    """The outputs every serving stack exports (values may be `pulumi.Output`s)."""
    outputs = {ENDPOINT_URL: endpoint_url, IMAGE: image, IMAGE_DIGEST: image_digest, MODEL_NAME: model_name,
               MODEL_VERSION: model_version}
    if dashboard is not None:
        outputs[DASHBOARD] = dashboard
    return outputs
