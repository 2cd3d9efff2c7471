"""The one settings object: every value comes from the environment (prefix ARC_), read once, passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Deployment settings. Each field is read from ARC_<FIELD_NAME> unless an alias says otherwise."""

    model_config = SettingsConfigDict(env_prefix="ARC_", extra="ignore", frozen=True)

    # Where things live
    project: str = Field("arc-local", description="Google Cloud project id (ARC_PROJECT).")
    region: str = Field("us-central1", description="Region of Batch jobs and functions (ARC_REGION).")
    inbox_bucket: str = Field(
        "arc-inbox", description="Bucket users drop run bundles into (ARC_INBOX_BUCKET)."
    )
    runs_bucket: str = Field("arc-runs", description="Bucket holding each run's folder (ARC_RUNS_BUCKET).")

    # Batch orchestrator job
    orchestrator_image: str = Field(
        "arc-reactor/orchestrator:latest",
        description="Orchestrator container image (ARC_ORCHESTRATOR_IMAGE).",
    )
    orchestrator_service_account: str = Field(
        "", description="Service account email of the orchestrator VM (ARC_ORCHESTRATOR_SERVICE_ACCOUNT)."
    )
    task_service_account: str = Field(
        "", description="Service account email Nextflow gives its task jobs (ARC_TASK_SERVICE_ACCOUNT)."
    )
    batch_topic: str = Field(
        "", description="Pub/Sub topic for Batch notifications, projects/P/topics/T (ARC_BATCH_TOPIC)."
    )
    network: str = Field(
        "", description="VPC network self link for Batch VMs (ARC_NETWORK); empty = default."
    )
    subnetwork: str = Field("", description="Subnetwork self link for Batch VMs (ARC_SUBNETWORK).")
    no_external_ip: bool = Field(False, description="Batch VMs without external IPs (ARC_NO_EXTERNAL_IP).")
    batch_endpoint: str = Field(
        "", description="host:port of a local Batch gRPC service (ARC_BATCH_ENDPOINT); empty = Google's API."
    )

    # Database: DATABASE_URL, else Cloud SQL through the connector, else embedded PostgreSQL (pgserver)
    database_url: str = Field(
        "",
        validation_alias=AliasChoices("DATABASE_URL", "ARC_DATABASE_URL"),
        description="SQLAlchemy URL (DATABASE_URL), e.g. postgresql+pg8000://user:pw@host/db.",
    )
    cloudsql_instance: str = Field(
        "", description="Cloud SQL connection name project:region:instance (ARC_CLOUDSQL_INSTANCE)."
    )
    db_name: str = Field("arc", description="Database name on Cloud SQL (ARC_DB_NAME).")
    db_iam_user: str = Field(
        "",
        description="IAM database user: service account email minus .gserviceaccount.com (ARC_DB_IAM_USER).",
    )
    pgserver_dir: Path = Field(
        Path(".arc/pgdata"), description="Data folder of the embedded PostgreSQL (ARC_PGSERVER_DIR)."
    )
    db_pool_size: int = Field(2, ge=1, le=20, description="Connections kept per instance (ARC_DB_POOL_SIZE).")
    db_max_overflow: int = Field(
        2, ge=0, le=20, description="Extra connections at peak (ARC_DB_MAX_OVERFLOW)."
    )

    # Behaviour and limits
    results_url_ttl_seconds: int = Field(
        3600,
        ge=60,
        le=604800,  # a V4 signed URL lives at most 7 days
        description="Seconds a results download URL works (ARC_RESULTS_URL_TTL_SECONDS).",
    )
    max_event_age_seconds: int = Field(
        86400,
        ge=60,
        description="Events older than this are dropped with a warning (ARC_MAX_EVENT_AGE_SECONDS).",
    )
    stale_after_seconds: int = Field(
        900,
        ge=60,
        description="A submitted/running run unchanged this long is swept (ARC_STALE_AFTER_SECONDS).",
    )
    sweep_batch_size: int = Field(
        50, ge=1, le=1000, description="Runs checked per sweep (ARC_SWEEP_BATCH_SIZE)."
    )
    max_file_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="Largest accepted bundle file (ARC_MAX_FILE_BYTES)."
    )
    max_samplesheet_rows: int = Field(
        10000, ge=1, description="Most samplesheet rows accepted (ARC_MAX_SAMPLESHEET_ROWS)."
    )
    manifest_name: str = Field("run.yaml", description="The bundle's commit marker (ARC_MANIFEST_NAME).")
    pipelines_root: Path = Field(
        Path(__file__).resolve().parents[2],
        description="Folder that registry `path:` sources are relative to (ARC_PIPELINES_ROOT).",
    )
    service_url: str = Field(
        "",
        description="The runs API's own https URL(s), comma-separated: the audience its callers' ID tokens "
        "must carry (ARC_SERVICE_URL). Never taken from a request's Host header.",
    )
    schema_cache_dir: Path | None = Field(
        None,
        description="Folder of pipeline schemas, <dir>/<pipeline with / as ->/[<revision>/]<file>, read "
        "before any download (ARC_SCHEMA_CACHE_DIR): offline validation of remote pipelines.",
    )
    reader_members: str = Field(
        "",
        description="Comma-separated e-mails (users, or groups named in the token) who may read every run; "
        "others read only the runs they submitted (ARC_READER_MEMBERS).",
    )
    group_lookup: bool = Field(
        True,
        description="Look up members of the groups in ARC_ADMIN_GROUP and ARC_READER_MEMBERS with the Cloud "
        "Identity Groups API (ARC_GROUP_LOOKUP; false: only emails and token groups claims match).",
    )
    cloud_identity_endpoint: str = Field(
        "https://cloudidentity.googleapis.com",
        description="Cloud Identity API endpoint (ARC_CLOUD_IDENTITY_ENDPOINT; tests use a local server).",
    )
    admin_group: str = Field(
        "", description="Group email whose members may cancel or recover anyone's runs (ARC_ADMIN_GROUP)."
    )
    iap_audiences: str = Field(
        "",
        description=(
            "Identity-Aware Proxy in front of runs_api: the audiences of the IAP-signed header it accepts "
            "(ARC_IAP_AUDIENCES, comma-separated), as IAP's Console page shows them, e.g. "
            "/projects/NUMBER/global/backendServices/ID behind a load balancer. Empty: no IAP."
        ),
    )
    # Nextflow task jobs on Batch (rendered into the orchestrator's nextflow.config: docs/orchestrator.md)
    batch_spot: bool = Field(True, description="Run Nextflow task jobs on Spot VMs (ARC_BATCH_SPOT).")
    max_spot_attempts: int = Field(
        3, ge=1, le=10, description="Batch attempts of a preempted Spot task (ARC_MAX_SPOT_ATTEMPTS)."
    )
    boot_disk_gb: int = Field(
        100, ge=10, le=65536, description="Boot disk of each task VM, GB (ARC_BOOT_DISK_GB)."
    )
    task_max_retries: int = Field(
        3, ge=0, le=10, description="Retries of a task failed by the infrastructure (ARC_TASK_MAX_RETRIES)."
    )
    # Cost (core/cost.py, docs/cost.md)
    price_table: str = Field(
        "", description="A machine price table of your own, YAML like registry/prices.yaml (ARC_PRICE_TABLE)."
    )
    billing_export_table: str = Field(
        "",
        description="The Cloud Billing export table, project.dataset.table, whose charges labelled with a "
        "run's run-id are its billed cost (ARC_BILLING_EXPORT_TABLE; empty: no billed cost).",
    )
    bigquery_endpoint: str = Field(
        "", description="BigQuery API endpoint (ARC_BIGQUERY_ENDPOINT; tests use a local server)."
    )
    task_max_cpus: int = Field(36, ge=1, description="resourceLimits cpus of a task (ARC_TASK_MAX_CPUS).")
    task_max_memory_gb: int = Field(
        500, ge=1, description="resourceLimits memory of a task, GB (ARC_TASK_MAX_MEMORY_GB)."
    )
    task_max_time_h: int = Field(
        48, ge=1, description="resourceLimits time of a task, hours (ARC_TASK_MAX_TIME_H)."
    )
    # Snakemake's jobs (docs/snakemake.md): Batch task jobs through our executor plugin, or (`local`) all
    # inside the orchestrator's VM, for a deployment whose workflows are small
    snakemake_executor: Literal["batch", "local"] = Field(
        "batch", description="Where Snakemake runs its jobs: batch or local (ARC_SNAKEMAKE_EXECUTOR)."
    )
    snakemake_max_jobs: int = Field(
        100, ge=1, le=5000, description="Snakemake task jobs at once per run (ARC_SNAKEMAKE_MAX_JOBS)."
    )
    snakemake_status_interval_s: float = Field(
        10.0, ge=0.1, le=600,
        description="Seconds between Snakemake's checks of its task jobs (ARC_SNAKEMAKE_STATUS_INTERVAL_S).",
    )  # fmt: skip
    local: bool = Field(
        False, description="Running on the embedded local stack: anonymous credentials, no auth (ARC_LOCAL)."
    )

    @property
    def service_urls(self) -> tuple[str, ...]:
        """ARC_SERVICE_URL as a tuple of URLs without a trailing slash."""
        return tuple(u.strip().rstrip("/") for u in self.service_url.split(",") if u.strip())

    @property
    def iap_audience_list(self) -> tuple[str, ...]:
        """ARC_IAP_AUDIENCES as a tuple."""
        return tuple(a.strip() for a in self.iap_audiences.split(",") if a.strip())

    @model_validator(mode="after")
    def _no_local_parts_when_deployed(self) -> Settings:
        refuse_local_parts_when_deployed(self, os.environ)
        return self


# Cloud Run (and so Cloud Run functions) sets these in every instance; nothing else we run does.
CLOUD_RUN_VARS = ("K_SERVICE", "K_REVISION", "K_CONFIGURATION")


def refuse_local_parts_when_deployed(settings: Settings, environ: Mapping[str, str]) -> None:
    """Raise ValueError when a deployed function is configured with a part of the embedded local stack: no
    authentication (ARC_LOCAL), an insecure local Batch channel (ARC_BATCH_ENDPOINT) or the storage
    emulator (STORAGE_EMULATOR_HOST). One environment variable must never switch off a deployment's
    authentication, so such an instance refuses to start rather than serve."""
    where = next((f"{v}={environ[v]}" for v in CLOUD_RUN_VARS if environ.get(v)), None)
    if where is None:
        return
    local = [
        name
        for name, on in (
            ("ARC_LOCAL=true", settings.local),
            ("ARC_BATCH_ENDPOINT", bool(settings.batch_endpoint)),
            ("STORAGE_EMULATOR_HOST", bool(environ.get("STORAGE_EMULATOR_HOST"))),
        )
        if on
    ]
    if local:
        raise ValueError(
            f"{', '.join(local)}: local-stack setting(s) refused on Cloud Run ({where}); "
            "remove them from the function's environment"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
