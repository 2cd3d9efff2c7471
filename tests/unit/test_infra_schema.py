"""infra/ against the real provider schemas: a `terraform validate` for names, without a provider download.

Every resource, data source and provider block of infra/ and infra/modules/** is checked against the
schema of its provider release (hashicorp/google and google-beta 6.50.0, hashicorp/archive 2.7.1), read at
test time from the prebuilt CDKTF bindings on PyPI (see tests/tf_schema.py): every argument and nested
block exists (recursively, dynamic blocks by their label), is written as an argument or as a block as the
schema says, single blocks appear once, every required argument and block is present, every resource
type and data source exists, and a constant string given to an enum argument is one of its values.
Meta-arguments (count, for_each, depends_on, provider, lifecycle, provisioner, connection) are
Terraform's and not checked. Other values, references, types, conflicting or co-required arguments, and
whatever the API decides at plan/apply time are not checked.

Skipped, with the reason, only when the provider packages are not installed (`make test` installs
requirements-infra.txt); in CI their absence fails the test instead.
"""

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import tf_schema

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

Schemas = Callable[[str], tf_schema.ProviderSchema | None]


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    missing = [dist for dist in tf_schema.PACKAGES.values() if tf_schema.assembly_file(dist) is None]
    if missing:
        why = (
            f"{', '.join(missing)} not installed (pip install --no-compile -r requirements-infra.txt): "
            "no provider schema to check infra/ against"
        )
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return tf_schema.provider_schema


@pytest.fixture(scope="session")
def infra_report(schemas: Schemas) -> tf_schema.Report:
    return tf_schema.check_tree(INFRA, schemas)


def _problems(report: tf_schema.Report) -> list[str]:
    return [str(p) for p in report.problems]


# --- infra/ itself ----------------------------------------------------------------------------------


def test_infra_matches_provider_schemas(infra_report: tf_schema.Report) -> None:
    assert not infra_report.problems, "infra/ does not match the provider schemas:\n" + "\n".join(
        _problems(infra_report)
    )


def test_every_block_of_infra_is_checked(infra_report: tf_schema.Report) -> None:
    assert not infra_report.unchecked, "\n".join(infra_report.unchecked)
    # Every resource, data and provider block, counted from the text independently of python-hcl2.
    declared = sum(
        len(re.findall(r'^(?:resource|data|provider) "', path.read_text(), re.MULTILINE))
        for folder in tf_schema.module_folders(INFRA)
        for path in folder.glob("*.tf")
    )
    assert len(infra_report.checked) == declared > 0


def test_provider_packages_match_the_version_constraints(infra_report: tf_schema.Report) -> None:
    """The schemas come from provider releases that every module's required_providers admits."""
    seen = set()
    for folder in tf_schema.module_folders(INFRA):
        documents = tf_schema.load_module(folder)
        for local, source in tf_schema.provider_sources(documents).items():
            schema = infra_report.providers.get(source)
            if schema is None:
                continue
            for doc in documents.values():
                for terraform in doc.get("terraform", ()):
                    for required in terraform.get("required_providers", ()):
                        spec = required.get(local)
                        if isinstance(spec, dict) and "version" in spec:
                            constraint = spec["version"].strip('"')
                            seen.add(source)
                            assert tf_schema.constraint_allows(constraint, schema.version), (
                                f"{folder.relative_to(ROOT)}: {source} {constraint!r} excludes "
                                f"{schema.version}, the release {schema.package} was generated from"
                            )
    assert seen == {"hashicorp/google", "hashicorp/google-beta", "hashicorp/archive"}


def test_schema_extraction_knows_the_provider(schemas: Schemas) -> None:
    """Guards the extraction itself: names, required-ness and nesting as the google provider has them."""
    google = schemas("hashicorp/google")
    assert google is not None
    assert google.version.startswith("6.")
    assert len(google.resources) > 1000 and len(google.data_sources) > 300
    bucket = google.lookup("resource", "google_storage_bucket")
    assert bucket is not None
    assert bucket.fields["location"].required and bucket.fields["name"].required
    assert not bucket.fields["storage_class"].required
    assert "self_link" not in bucket.fields and "url" not in bucket.fields  # computed only
    rule = bucket.fields["lifecycle_rule"]
    assert rule.block and not rule.single and not rule.required
    assert bucket.fields["versioning"].single
    condition_struct = google.block(rule.block).fields["condition"].block
    assert condition_struct is not None
    condition = google.block(condition_struct)
    assert {"age", "matches_prefix", "with_state"} <= set(condition.fields)
    # A property CDKTF renamed (it clashes with a construct member) keeps its HCL name.
    repo = google.lookup("resource", "google_cloudbuild_trigger")
    assert repo is not None and "build" in repo.fields
    beta = schemas("hashicorp/google-beta")
    assert beta is not None and beta.lookup("resource", "google_project_service_identity") is not None
    assert google.lookup("resource", "google_project_service_identity") is None  # beta only in 6.x


def test_constraint_allows() -> None:
    assert tf_schema.constraint_allows(">= 6.0, < 7.0", "6.50.0")
    assert not tf_schema.constraint_allows(">= 6.0, < 7.0", "7.0.0")
    assert tf_schema.constraint_allows("~> 2.4", "2.7.1")
    assert not tf_schema.constraint_allows("~> 2.4.0", "2.7.1")
    assert not tf_schema.constraint_allows("!= 2.7.1", "2.7.1")
    assert tf_schema.constraint_allows("2.7.1", "2.7.1")


# --- the check fails when it should: mistakes planted in a copy of infra/ -----------------------------


@pytest.fixture
def infra_copy(tmp_path: Path) -> Path:
    target = tmp_path / "infra"
    shutil.copytree(INFRA, target, ignore=shutil.ignore_patterns(".*"))
    return target


# (file, pattern, replacement, the one new problem). Each pattern must match in the real file: a mutation
# that no longer applies fails here instead of passing without testing anything.
MUTATIONS = {
    "typo in an argument": (
        "storage.tf",
        r"uniform_bucket_level_access",
        "uniform_bucket_level_acces",
        "storage.tf: google_storage_bucket.inbox.uniform_bucket_level_acces: unsupported argument or block "
        "`uniform_bucket_level_acces` (did you mean `uniform_bucket_level_access`?)",
    ),
    "typo two blocks deep": (
        "database.tf",
        r"\bssl_mode\b",
        "sslmode",
        "database.tf: google_sql_database_instance.arc.settings.ip_configuration.sslmode: "
        "unsupported argument or block `sslmode` (did you mean `ssl_mode`?)",
    ),
    "typo inside a dynamic block of a module": (
        "modules/function/main.tf",
        r"\btrigger_region\b",
        "trigger_regoin",
        "modules/function/main.tf: google_cloudfunctions2_function.this.event_trigger.trigger_regoin: "
        "unsupported argument or block `trigger_regoin` (did you mean `trigger_region`?)",
    ),
    "value outside an enum": (
        "modules/function/main.tf",
        r'"RETRY_POLICY_RETRY"',
        '"RETRY_POLICY_RETRIES"',
        "modules/function/main.tf: google_cloudfunctions2_function.this.event_trigger.retry_policy: "
        "'RETRY_POLICY_RETRIES' is not one of the documented values RETRY_POLICY_UNSPECIFIED, "
        "RETRY_POLICY_DO_NOT_RETRY, RETRY_POLICY_RETRY",
    ),
    "dynamic block of a type that does not exist": (
        "storage.tf",
        r'dynamic "lifecycle_rule"',
        'dynamic "lifecycle_rules"',
        'storage.tf: google_storage_bucket.inbox.dynamic "lifecycle_rules": dynamic block: unsupported '
        "argument or block `lifecycle_rules` (did you mean `lifecycle_rule`?)",
    ),
    "required argument missing on the google-beta resource": (
        "main.tf",
        r'\n\s*service\s*= "pubsub\.googleapis\.com"',
        "",
        "main.tf: google_project_service_identity.pubsub.service: required argument `service` is missing",
    ),
    "computed-only attribute set": (
        "network.tf",
        r'resource "google_compute_network" "arc" \{',
        'resource "google_compute_network" "arc" {\n  gateway_ipv4 = "10.0.0.1"',
        "network.tf: google_compute_network.arc.gateway_ipv4: unsupported argument or block `gateway_ipv4`",
    ),
    "block written as an argument": (
        "pubsub.tf",
        r"expiration_policy \{",
        "expiration_policy = {",
        "pubsub.tf: google_pubsub_subscription.dead_letter.expiration_policy: is a block: write "
        "`expiration_policy { ... }`, not `expiration_policy = ...`",
    ),
    "resource type that does not exist": (
        "pubsub.tf",
        r'resource "google_pubsub_topic" "sweep"',
        'resource "google_pubsub_topics" "sweep"',
        "pubsub.tf: google_pubsub_topics.sweep: provider hashicorp/google 6.50.0 has no resource type "
        "`google_pubsub_topics` (did you mean `google_pubsub_topic`?)",
    ),
    "typo in a provider block": (
        "versions.tf",
        r"default_labels",
        "default_label",
        'versions.tf: provider "google".default_label: unsupported argument or block `default_label` '
        "(did you mean `default_labels`?)",
    ),
    "typo in a data source": (
        "main.tf",
        r"project_id = var\.project_id",
        "projectid = var.project_id",
        "main.tf: data.google_project.this.projectid: unsupported argument or block `projectid` "
        "(did you mean `project_id`?)",
    ),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_planted_mistake_is_found(
    name: str, schemas: Schemas, infra_copy: Path, infra_report: tf_schema.Report
) -> None:
    file, pattern, replacement, expected = MUTATIONS[name]
    path = infra_copy / file
    text, count = re.subn(pattern, replacement, path.read_text(), count=1)
    assert count == 1, f"{file} no longer contains {pattern!r}: update this mutation"
    path.write_text(text)

    before = set(_problems(infra_report))
    new = [p for p in _problems(tf_schema.check_tree(infra_copy, schemas)) if p not in before]
    assert new == [expected]


SYNTHETIC = """
terraform {
  required_providers {
    google     = { source = "hashicorp/google" }
    beta       = { source = "hashicorp/google-beta" }
    archive    = { source = "hashicorp/archive" }
  }
}

provider "google" {
  alias   = "other"
  projekt = "p"
}

resource "google_storage_bucket" "b" {
  count    = 1
  provider = google.other
  name     = "b"
  location = "EU"
  versioning { enabled = true }
  versioning { enabled = false }
  lifecycle_rule {
    condition { age = 1 }
  }
  dynamic "cors" {
    for_each = []
  }
  storage_class {
  }
  lifecycle {
    prevent_destroy = true
  }
  provisioner "local-exec" {
    command = "true"
  }
}

resource "google_project_service_identity" "s" {
  provider = beta
  service  = "pubsub.googleapis.com"
  servce   = "x"
}

data "archive_file" "a" {
  type        = "zip"
  output_path = "x.zip"
  source_dirr = "."
}

resource "terraform_data" "t" {
  input  = 1
  inputs = 2
}
"""


def test_every_kind_of_mistake_in_a_synthetic_module(schemas: Schemas, tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(SYNTHETIC)
    report = tf_schema.check_tree(tmp_path, schemas)
    assert sorted(_problems(report)) == sorted(
        [
            'main.tf: provider "google".projekt: unsupported argument or block `projekt` '
            "(did you mean `project`?)",
            "main.tf: google_storage_bucket.b.versioning: at most one `versioning` block is allowed, found 2",
            "main.tf: google_storage_bucket.b.lifecycle_rule.action: required block `action` is missing",
            'main.tf: google_storage_bucket.b.dynamic "cors": '
            "a dynamic block needs `for_each` and a `content` block",
            "main.tf: google_storage_bucket.b.storage_class: is an argument: write `storage_class = ...`, "
            "not a block",
            "main.tf: google_project_service_identity.s.servce: unsupported argument or block `servce` "
            "(did you mean `service`?)",
            "main.tf: data.archive_file.a.source_dirr: unsupported argument or block `source_dirr` "
            "(did you mean `source_dir`?)",
            "main.tf: terraform_data.t.inputs: unsupported argument or block `inputs` "
            "(did you mean `input`?)",
        ]
    )
    assert not report.unchecked
    assert set(report.providers) == {
        "hashicorp/google",
        "hashicorp/google-beta",
        "hashicorp/archive",
        tf_schema.BUILTIN_SOURCE,
    }


def test_without_the_packages_nothing_is_silently_passed(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(SYNTHETIC)
    report = tf_schema.check_tree(tmp_path, lambda source: None)
    assert not report.checked and not report.problems
    assert len(report.unchecked) == 5
