"""Static checks of infra/ (Terraform).

Providers cannot be downloaded here, so `terraform validate` is unavailable: these tests parse every .tf
file with python-hcl2 and assert the properties a reviewer would check by hand (lifecycle scope, every
role of every identity, trigger retries, database protection), plus a poor man's validate (every
reference resolves, every module argument exists). `terraform fmt -check` runs when terraform is on PATH.
"""

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

hcl2 = pytest.importorskip("hcl2")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MODULE = INFRA / "modules" / "function"

PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
CLOUDSQL = {("roles/cloudsql.client", "project"), ("roles/cloudsql.instanceUser", "project")}

# Every role of every identity, and where it is granted. "[condition]" marks a grant limited by an IAM
# condition (the conditions themselves are pinned in CONDITIONS); "subscription:eventarc" is granted by the
# gcloud step that attaches the dead-letter policy. infra/iam.tf cites the page that requires each one.
EXPECTED_ROLES = {
    "submit_bundle": CLOUDSQL
    | {
        ("roles/batch.jobsEditor", "project"),
        ("roles/storage.objectViewer", "bucket:inbox"),
        # Feedback files only: rewriting run.yaml.accepted.json needs objects.delete (not in objectCreator).
        ("roles/storage.objectUser", "bucket:inbox[condition]"),
        ("roles/storage.objectUser", "bucket:runs"),
        ("roles/iam.serviceAccountUser", "sa:orchestrator"),
        ("roles/storage.objectViewer", "bucket:inputs"),  # the demo data and var.input_buckets
    },
    "runs_api": CLOUDSQL
    | {
        ("roles/batch.jobsEditor", "project"),
        ("roles/logging.viewer", "project"),
        ("roles/storage.objectUser", "bucket:runs"),
        ("roles/iam.serviceAccountUser", "sa:orchestrator"),
        # Signs the results' download URLs as itself (IAM signBlob: iam.serviceAccounts.signBlob).
        ("roles/iam.serviceAccountTokenCreator", "sa:runs_api"),
        ("roles/storage.objectViewer", "bucket:inputs"),  # the demo data and var.input_buckets
        # Its runs' billed cost from the billing export, when var.billing_export_table names one.
        ("roles/bigquery.jobUser", "project"),
        ("roles/bigquery.dataViewer", "dataset:billing_export"),
    },
    "reconcile_batch_event": CLOUDSQL
    | {("roles/batch.jobsViewer", "project"), ("roles/storage.objectViewer", "bucket:runs")},
    # Cancels (and deletes) the jobs of runs being cancelled or over their limits: jobsViewer cannot.
    "sweep_stale_runs": CLOUDSQL | {("roles/batch.jobsEditor", "project")},
    "orchestrator": CLOUDSQL
    | {
        ("roles/batch.agentReporter", "project"),
        ("roles/batch.jobsEditor", "project"),
        ("roles/logging.logWriter", "project"),
        ("roles/storage.objectUser", "bucket:runs"),
        ("roles/iam.serviceAccountUser", "sa:task"),
        ("roles/pubsub.publisher", "topic:batch_notifications"),
        ("roles/artifactregistry.reader", "repo:orchestrator"),
        ("roles/storage.objectViewer", "bucket:inputs"),  # the demo data and var.input_buckets
        # Its Tower relay sends Nextflow's task reports to runs_api (orchestrator/relay.py).
        ("roles/run.invoker", "run:runs_api"),
    },
    "task": {
        ("roles/batch.agentReporter", "project"),
        ("roles/logging.logWriter", "project"),
        ("roles/storage.objectUser", "bucket:runs"),
        ("roles/artifactregistry.reader", "repo:orchestrator"),
        ("roles/storage.objectViewer", "bucket:inputs"),  # the demo data and var.input_buckets
        # Snakemake's storage plugin names the project on each request (userProject): docs/snakemake.md
        ("roles/serviceusage.serviceUsageConsumer", "project"),
    },
    "eventarc": {
        ("roles/eventarc.eventReceiver", "project"),
        ("roles/run.invoker", "run:submit_bundle"),
        ("roles/run.invoker", "run:reconcile_batch_event"),
        ("roles/run.invoker", "run:sweep_stale_runs"),
    },
    # Reads the source copy in Cloud Functions' gcf-v2-sources-* buckets; nothing on functions_source.
    "build": {
        ("roles/logging.logWriter", "project"),
        ("roles/storage.objectViewer", "project[condition]"),
        ("roles/artifactregistry.writer", "repo:functions"),
    },
    "gcs_agent": {("roles/pubsub.publisher", "project")},
    "pubsub_agent": {
        ("roles/iam.serviceAccountTokenCreator", "sa:eventarc"),
        ("roles/pubsub.publisher", "topic:dead_letter"),
        ("roles/pubsub.subscriber", "subscription:eventarc"),
    },
    "operators": CLOUDSQL,
    "inbox_uploaders": {("roles/storage.objectUser", "bucket:inbox")},
    # Read runs/ (inputs, results, logs) with their own tools; never work/ or cache/.
    "runs_results_readers": {("roles/storage.objectViewer", "bucket:runs[condition]")},
    "api_invokers": {("roles/run.invoker", "run:runs_api")},
}

# (who, role, scope) of every conditional grant -> its exact condition expression.
CONDITIONS = {
    ("build", "roles/storage.objectViewer", "project[condition]"): (
        'resource.name.startsWith("projects/_/buckets/gcf-v2-sources-")'
    ),
    ("submit_bundle", "roles/storage.objectUser", "bucket:inbox[condition]"): (
        'resource.name.endsWith(".accepted.json") || resource.name.endsWith(".rejected.json")'
    ),
    ("runs_results_readers", "roles/storage.objectViewer", "bucket:runs[condition]"): (
        'resource.type == "storage.googleapis.com/Bucket" || '
        'resource.name.startsWith("projects/_/buckets/${local.runs_bucket}/objects/runs/")'
    ),
}

FUNCTION_ENV = {
    "ARC_PROJECT",
    "ARC_SERVICE_URL",
    "ARC_READER_MEMBERS",
    "ARC_GROUP_LOOKUP",
    "ARC_REGION",
    "ARC_INBOX_BUCKET",
    "ARC_RUNS_BUCKET",
    "ARC_ORCHESTRATOR_IMAGE",
    "ARC_ORCHESTRATOR_SERVICE_ACCOUNT",
    "ARC_TASK_SERVICE_ACCOUNT",
    "ARC_BATCH_TOPIC",
    "ARC_NETWORK",
    "ARC_SUBNETWORK",
    "ARC_NO_EXTERNAL_IP",
    "ARC_CLOUDSQL_INSTANCE",
    "ARC_DB_NAME",
    "ARC_DB_POOL_SIZE",
    "ARC_DB_MAX_OVERFLOW",
    "ARC_ADMIN_GROUP",
    "ARC_MAX_EVENT_AGE_SECONDS",
    "ARC_BILLING_EXPORT_TABLE",
    "ARC_IAP_AUDIENCES",
    "ARC_SNAKEMAKE_EXECUTOR",
}

EVENT_FUNCTIONS = {
    "submit_bundle": "google.cloud.storage.object.v1.finalized",
    "reconcile_batch_event": "google.cloud.pubsub.topic.v1.messagePublished",
    "sweep_stale_runs": "google.cloud.pubsub.topic.v1.messagePublished",
}


# --- parsing -------------------------------------------------------------------------------------


def _unquote(text):
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _clean(value):
    """hcl2 output without its bookkeeping: quotes stripped, __is_block__ / __comments__ dropped."""
    if isinstance(value, dict):
        return {_unquote(k): _clean(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def _load(folder):
    merged = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            doc = _clean(hcl2.load(handle))
        for kind, blocks in doc.items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


@pytest.fixture(scope="module")
def root():
    return _load(INFRA)


@pytest.fixture(scope="module")
def module():
    return _load(MODULE)


def _resources(doc, kind="resource"):
    """{(type, name): body} of every resource (or data source) in a parsed folder."""
    found = {}
    for block in doc.get(kind, []):
        for rtype, named in block.items():
            for name, body in named.items():
                found[(rtype, name)] = body
    return found


def _named(doc, kind):
    """{name: body} of variable / output / module blocks."""
    return {name: body for block in doc.get(kind, []) for name, body in block.items()}


def _function_calls(root):
    """{function: its module arguments}: the one for_each call of modules/function with each.key and
    each.value.<x> filled in from local.functions, as Terraform expands it (a null value is no argument)."""
    (call,) = _named(root, "module").values()
    out = {}
    for name, values in _locals(root)["functions"].items():
        args = {}
        for key, value in call.items():
            if key == "for_each":
                continue
            each = re.fullmatch(r"\$\{each\.value\.(\w+)\}", value) if isinstance(value, str) else None
            if each:
                if values.get(each.group(1)) is not None:
                    args[key] = values[each.group(1)]
            elif isinstance(value, str):
                args[key] = value.replace("${each.key}", name).replace("[each.key]", f'["{name}"]')
            else:
                args[key] = value
        out[name] = args
    return out


def _locals(doc):
    merged = {}
    for block in doc.get("locals", []):
        merged.update(block)
    return merged


def _strings(value):
    """Every string inside a parsed value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _one(value):
    """A nested block parsed as a one-element list."""
    assert isinstance(value, list) and len(value) == 1, value
    return value[0]


def _default_of(variables, name):
    return variables[name]["default"]


# --- identities and roles ------------------------------------------------------------------------

# IAM resource type -> (scope prefix, argument naming the resource, pattern of the reference in it)
SCOPE_OF = {
    "google_storage_bucket_iam_member": ("bucket", "bucket", r"google_storage_bucket\.(\w+)\."),
    # The function accounts are one for_each: google_service_account.functions["runs_api"] is sa:runs_api.
    "google_service_account_iam_member": (
        "sa",
        "service_account_id",
        r"google_service_account\.(?:functions\[\"(\w+)\"\]|(\w+))\.",
    ),
    "google_pubsub_topic_iam_member": ("topic", "topic", r"google_pubsub_topic\.(\w+)\."),
    "google_bigquery_dataset_iam_member": (
        "dataset",
        "dataset_id",
        r"\$\{local\.(billing_export)\[0\]\[1\]\}",
    ),
    "google_artifact_registry_repository_iam_member": (
        "repo",
        "repository",
        r"google_artifact_registry_repository\.(\w+)\.",
    ),
}


def _who(member, resource=None):
    """The identity an IAM member expression names; members from a variable go by their resource's name."""
    if match := re.fullmatch(r"\$\{local\.members\.(\w+)\}", member):
        return match.group(1)
    if member == "user:${each.value.email}":
        return "operators"
    if member == "${each.value}" and resource:
        return resource
    raise AssertionError(f"unrecognised IAM member expression: {member!r}")


def _granted(root, module):
    """(who, role, scope) of every grant the configuration makes."""
    grants = set()
    resources = _resources(root)
    table = _locals(root)["project_roles"]
    for who, roles in table.items():
        grants |= {(who, role, "project") for role in roles}
    for (rtype, name), body in resources.items():
        if not rtype.endswith("_iam_member"):
            continue
        if (rtype, name) == ("google_project_iam_member", "project_roles"):
            assert body["for_each"] == "${local.project_role_bindings}"
            assert body["member"] == "${local.members[each.value.who]}"
            continue
        if (rtype, name) == ("google_storage_bucket_iam_member", "input_readers"):
            # One grant per (reader, input bucket): the demo-data bucket and var.input_buckets.
            assert body["for_each"] == "${local.input_reader_grants}"
            assert (body["member"], body["bucket"]) == (
                "${local.members[each.value.who]}",
                "${each.value.bucket}",
            )
            grants |= {(who, body["role"], "bucket:inputs") for who in _locals(root)["input_readers"]}
            continue
        who = _who(body["member"], name)
        role = body["role"]
        roles = [role] if role.startswith("roles/") else re.findall(r"roles/[\w.]+", body.get("for_each", ""))
        assert roles, f"{rtype}.{name}: cannot tell which role it grants"
        if rtype == "google_project_iam_member":
            scope = "project[condition]" if "condition" in body else "project"
        elif rtype in SCOPE_OF:
            prefix, attr, pattern = SCOPE_OF[rtype]
            match = re.search(pattern, body[attr])
            assert match, f"{rtype}.{name}: {attr} is not a resource of this configuration"
            target = next(g for g in match.groups() if g)
            scope = f"{prefix}:{target}" + ("[condition]" if "condition" in body else "")
        else:
            raise AssertionError(f"{rtype}.{name}: IAM resource type not covered by this test")
        grants |= {(who, r, scope) for r in roles}
    # run.invoker, granted by the function module from each call's invoker_members
    (invoker,) = [b for (t, _), b in _resources(module).items() if t.endswith("_iam_member")]
    assert invoker["role"] == "roles/run.invoker"
    for name, call in _function_calls(root).items():
        members = call.get("invoker_members", {})
        if isinstance(members, str):  # runs_api: the users' list, and the orchestrator's Tower relay
            expected = (
                "${merge({for m in var.api_invoker_members : m => m}, "
                "{orchestrator = local.members.orchestrator})}"
            )
            assert members.replace(" ", "") == expected.replace(" ", ""), members
            grants.add(("api_invokers", "roles/run.invoker", f"run:{name}"))
            grants.add(("orchestrator", "roles/run.invoker", f"run:{name}"))
        else:
            grants |= {(_who(m), "roles/run.invoker", f"run:{name}") for m in members.values()}
    # pubsub.subscriber on the Eventarc-managed subscriptions, granted by the module's gcloud step
    (dead_letter,) = [b for (t, _), b in _resources(module).items() if t == "terraform_data"]
    exec_ = _one(dead_letter["provisioner"])["local-exec"]
    assert "$AGENT" in exec_["command"]
    assert exec_["environment"]["AGENT"] == "${var.dead_letter.pubsub_service_agent}"
    assert _locals(root)["dead_letter"].count("pubsub_service_agent = local.members.pubsub_agent") == 1
    for role in re.findall(r"--role (roles/[\w.]+)", exec_["command"]):
        grants.add(("pubsub_agent", role, "subscription:eventarc"))
    return grants


def test_every_identity_has_exactly_the_expected_roles(root, module):
    granted = _granted(root, module)
    expected = {(who, role, scope) for who, pairs in EXPECTED_ROLES.items() for role, scope in pairs}
    assert sorted(granted - expected) == [], "granted but not in the table"
    assert sorted(expected - granted) == [], "in the table but not granted"


def _conditions(root):
    """{(who, role, scope): condition expression} of every conditional IAM member of the root module."""
    found = {}
    for (rtype, name), body in _resources(root).items():
        if not (rtype.endswith("_iam_member") and "condition" in body):
            continue
        if rtype == "google_project_iam_member":
            scope = "project"
        else:
            prefix, attr, pattern = SCOPE_OF[rtype]
            scope = f"{prefix}:{re.search(pattern, body[attr]).group(1)}"
        expression = _one(body["condition"])["expression"].replace('\\"', '"')  # hcl2 keeps the escapes
        found[(_who(body["member"], name), body["role"], f"{scope}[condition]")] = expression
    return found


def test_conditional_grants_are_limited_exactly_as_intended(root, module):
    conditions = _conditions(root)
    assert conditions == CONDITIONS
    granted = _granted(root, module)
    assert set(CONDITIONS) <= granted
    assert {g for g in granted if "[condition]" in g[2]} == set(CONDITIONS)


def _comment_above(lines, index):
    """The comment block directly above lines[index] (contiguous `#` lines), as one string."""
    block = []
    i = index - 1
    while i >= 0 and lines[i].lstrip().startswith("#"):
        block.append(lines[i].strip())
        i -= 1
    return " ".join(reversed(block))


DOC_URL = re.compile(r"https://cloud\.google\.com/\S+")


def test_every_grant_cites_the_page_that_requires_it():
    """Each IAM member resource, each gcloud grant and each project-level role has a comment with the
    Google Cloud documentation URL that requires it (the issue that asked for it: roles drifted from the
    docs unnoticed)."""
    missing = []
    for path in sorted([*INFRA.glob("*.tf"), *MODULE.glob("*.tf")]):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            grant = re.match(r'resource "\w+_iam_member" "\w+"', line) or "add-iam-policy-binding" in line
            if grant and not DOC_URL.search(_comment_above(lines, i)):
                missing.append(f"{path.name}:{i + 1}: {line.strip()}")
    assert missing == [], "grants without a documentation URL in the comment above them"
    # The project-level table: a legend entry per role (`#   roles/x ... https://...`) above it.
    lines = (INFRA / "iam.tf").read_text().splitlines()
    (table,) = [i for i, line in enumerate(lines) if line.strip() == "project_roles = {"]
    legend, current = {}, None
    for comment in _comment_above(lines, table).split("# "):
        match = re.match(r"\s*(roles/[\w.]+)\s", comment)
        if match:
            current = match.group(1)
            legend[current] = ""
        if current:
            legend[current] += comment
    used = {role for roles in _locals(_load(INFRA))["project_roles"].values() for role in roles}
    assert set(legend) == used, "the legend above project_roles must list exactly the roles in it"
    assert [role for role, text in legend.items() if not DOC_URL.search(text)] == []


def test_no_role_appears_anywhere_that_the_table_does_not_list(root, module):
    allowed = {role for pairs in EXPECTED_ROLES.values() for role, _ in pairs}
    used = {m for doc in (root, module) for s in _strings(doc) for m in re.findall(r"roles/[\w.]+", s)}
    assert used <= allowed, sorted(used - allowed)


def test_no_primitive_roles_and_no_authoritative_iam(root, module):
    used = {m for doc in (root, module) for s in _strings(doc) for m in re.findall(r"roles/[\w.]+", s)}
    assert not used & PRIMITIVE_ROLES
    assert not {role for pairs in EXPECTED_ROLES.values() for role, _ in pairs} & PRIMITIVE_ROLES
    for (rtype, name), body in [*_resources(root).items(), *_resources(module).items()]:
        # _binding / _policy resources replace other people's grants; members only add ours.
        assert not rtype.endswith(("_iam_binding", "_iam_policy")), rtype
        if rtype.endswith("_iam_member"):
            assert "allUsers" not in body["member"] and "allAuthenticatedUsers" not in body["member"], name


def test_nothing_uses_the_default_compute_service_account(root, module):
    text = "\n".join(p.read_text() for p in INFRA.rglob("*.tf"))
    assert "compute@developer.gserviceaccount.com" not in text
    assert "-compute@" not in text
    fn = _resources(module)[("google_cloudfunctions2_function", "this")]
    assert _one(fn["service_config"])["service_account_email"] == "${var.service_account_email}"
    assert _one(fn["build_config"])["service_account"] == "${var.build_service_account}"
    trigger = _one(_one(fn["dynamic"])["event_trigger"]["content"])
    assert trigger["service_account_email"] == "${event_trigger.value.service_account_email}"
    calls = _function_calls(root)
    runtime_accounts = {call["service_account_email"] for call in calls.values()}
    assert runtime_accounts == {f'${{google_service_account.functions["{name}"].email}}' for name in calls}
    assert {call["build_service_account"] for call in calls.values()} == {
        "${local.function_defaults.build_service_account}"
    }
    assert _locals(root)["function_defaults"]["build_service_account"] == "${google_service_account.build.id}"
    for name in EVENT_FUNCTIONS:
        assert (
            calls[name]["event_trigger"]["service_account_email"]
            == "${google_service_account.eventarc.email}"
        )


# --- buckets -------------------------------------------------------------------------------------


def _layout_prefixes():
    """WORK_PREFIX, RUNS_PREFIX, CACHE_PREFIX from core/layout.py, the code's side of the contract."""
    tree = ast.parse((ROOT / "functions/arc_reactor/core/layout.py").read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "").endswith("_PREFIX")
    }


def test_runs_bucket_deletes_only_work_after_30_days(root):
    runs = _resources(root)[("google_storage_bucket", "runs")]
    assert "dynamic" not in runs, "rules of the runs bucket must be literal, not generated"
    rules = runs["lifecycle_rule"]
    deletes = [r for r in rules if _one(r["action"])["type"] == "Delete"]
    assert len(deletes) == 1
    condition = _one(deletes[0]["condition"])
    assert condition["matches_prefix"] == ["work/"]
    assert condition["age"] == 30
    assert set(condition) == {"age", "matches_prefix"}, "no other condition may widen or narrow the rule"
    layout = _layout_prefixes()
    assert condition["matches_prefix"] == [layout["WORK_PREFIX"]]
    for kept in (layout["RUNS_PREFIX"], layout["CACHE_PREFIX"]):
        assert not any(kept.startswith(p) or p.startswith(kept) for p in condition["matches_prefix"])
    assert _one(runs["versioning"])["enabled"] is False
    others = {_one(r["action"])["type"] for r in rules} - {"Delete"}
    assert others == {"AbortIncompleteMultipartUpload"}


def test_buckets_are_private_with_uniform_access(root):
    resources = _resources(root)
    for name in ("inbox", "runs", "functions_source"):
        bucket = resources[("google_storage_bucket", name)]
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
    inbox = resources[("google_storage_bucket", "inbox")]
    optional = _one(inbox["dynamic"])["lifecycle_rule"]
    assert optional["for_each"] == "${var.inbox_retention_days > 0 ? [var.inbox_retention_days] : []}"
    variables = _named(root, "variable")
    assert (
        _default_of(variables, "inbox_retention_days") == 0
    )  # opt-in: the system deletes nothing in the inbox


def test_function_source_object_is_named_by_the_archive_hash(root, module):
    resources = _resources(root)
    archive = _resources(root, "data")[("archive_file", "functions")]
    assert archive["source_dir"] == "${path.module}/../functions"
    obj = resources[("google_storage_bucket_object", "functions_source")]
    assert re.search(r"\$\{data\.archive_file\.functions\.output_(sha256|md5|base64sha256)\}", obj["name"])
    assert _locals(root)["function_defaults"]["source_object"] == (
        "${google_storage_bucket_object.functions_source.name}"
    )
    fn = _resources(module)[("google_cloudfunctions2_function", "this")]
    build = _one(fn["build_config"])
    assert build["runtime"] == "python311"
    assert _one(_one(build["source"])["storage_source"])["object"] == "${var.source_object}"


# --- functions and triggers ----------------------------------------------------------------------


def test_four_functions_with_their_entry_points_and_environment(root, module):
    calls = _function_calls(root)
    assert set(calls) == {*EVENT_FUNCTIONS, "runs_api"}
    for name, call in calls.items():
        assert call["source"] == "./modules/function"
        assert call["entry_point"] == name
        assert call["environment"] == "${local.function_environment}"
        assert call["max_instances"] == f"${{var.function_max_instances.{name}}}"
    assert set(_locals(root)["function_environment"]) == FUNCTION_ENV
    assert _locals(root)["function_environment"]["ARC_NO_EXTERNAL_IP"] == "true"
    env = _one(_resources(module)[("google_cloudfunctions2_function", "this")]["service_config"])
    assert "ARC_DB_IAM_USER = trimsuffix(var.service_account_email" in env["environment_variables"]


def test_event_triggers_always_retry(root, module):
    fn = _resources(module)[("google_cloudfunctions2_function", "this")]
    assert "event_trigger" not in fn, "the trigger must come from the dynamic block that sets retry"
    trigger = _one(_one(fn["dynamic"])["event_trigger"]["content"])
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    calls = _function_calls(root)
    for name, event_type in EVENT_FUNCTIONS.items():
        assert calls[name]["event_trigger"]["event_type"] == event_type, name
        assert calls[name]["dead_letter"] == "${local.dead_letter}", name
    assert "event_trigger" not in calls["runs_api"]
    assert calls["submit_bundle"]["event_trigger"]["event_filters"] == {
        "bucket": "${google_storage_bucket.inbox.name}"
    }
    assert calls["reconcile_batch_event"]["event_trigger"]["pubsub_topic"] == (
        "${google_pubsub_topic.batch_notifications.id}"
    )
    assert calls["sweep_stale_runs"]["event_trigger"]["pubsub_topic"] == "${google_pubsub_topic.sweep.id}"
    job = _resources(root)[("google_cloud_scheduler_job", "sweep")]
    assert job["schedule"] == "${var.sweep_schedule}"
    assert _default_of(_named(root, "variable"), "sweep_schedule") == "*/10 * * * *"
    assert _one(job["pubsub_target"])["topic_name"] == "${google_pubsub_topic.sweep.id}"


def test_runs_api_is_not_public(root):
    call = _function_calls(root)["runs_api"]
    assert call["ingress"] == "ALLOW_ALL"  # reachable, but only by IAM invokers
    for name in ("api_invoker_members", "inbox_uploader_members", "results_reader_members"):
        validation = _one(_named(root, "variable")[name]["validation"])
        assert "allUsers" in validation["condition"], name


def test_dead_letter_topic_has_an_inspection_subscription(root):
    resources = _resources(root)
    sub = resources[("google_pubsub_subscription", "dead_letter")]
    assert sub["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert "push_config" not in sub
    assert _one(sub["expiration_policy"])["ttl"] == ""


# --- database ------------------------------------------------------------------------------------


def test_cloud_sql_is_private_protected_and_uses_iam_auth(root):
    resources = _resources(root)
    instance = resources[("google_sql_database_instance", "arc")]
    assert instance["database_version"] == "POSTGRES_16"
    assert instance["deletion_protection"] is True
    settings = _one(instance["settings"])
    assert settings["deletion_protection_enabled"] is True
    ip = _one(settings["ip_configuration"])
    assert ip["ipv4_enabled"] is False
    assert ip["private_network"] == "${google_compute_network.arc.id}"
    assert "authorized_networks" not in ip
    flags = {f["name"]: f["value"] for f in settings["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    assert resources[("google_sql_database", "arc")]["name"] == "${var.db_name}"
    assert _default_of(_named(root, "variable"), "db_name") == "arc"
    users = resources[("google_sql_user", "service_accounts")]
    assert users["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert users["name"] == '${trimsuffix(each.value, ".gserviceaccount.com")}'
    db_accounts = _locals(root)["db_service_accounts"]
    assert "google_service_account.functions" in db_accounts
    assert "orchestrator = google_service_account.orchestrator.email" in db_accounts
    assert ("google_service_networking_connection", "private_services") in resources
    assert resources[("google_compute_global_address", "private_services")]["purpose"] == "VPC_PEERING"


def test_default_max_instances_fit_the_connection_budget(root):
    variables = _named(root, "variable")
    per_instance = _default_of(variables, "db_pool_size") + _default_of(variables, "db_max_overflow")
    instances = sum(_default_of(variables, "function_max_instances").values())
    needed = (
        instances * per_instance
        + _default_of(variables, "orchestrator_db_connections")
        + _default_of(variables, "db_reserved_connections")
    )
    assert needed <= _default_of(variables, "db_max_connections")
    instance = _resources(root)[("google_sql_database_instance", "arc")]
    precondition = _one(_one(instance["lifecycle"])["precondition"])
    assert precondition["condition"] == "${local.db_connections_needed <= var.db_max_connections}"
    flags = {f["name"]: f["value"] for f in _one(instance["settings"])["database_flags"]}
    assert flags["max_connections"] == "${tostring(var.db_max_connections)}"


# --- network -------------------------------------------------------------------------------------


def test_batch_network_has_private_google_access_and_nat(root):
    resources = _resources(root)
    assert resources[("google_compute_subnetwork", "batch")]["private_ip_google_access"] is True
    nat = resources[("google_compute_router_nat", "arc")]
    assert _one(nat["subnetwork"])["name"] == "${google_compute_subnetwork.batch.id}"
    env = _locals(root)["function_environment"]
    assert env["ARC_SUBNETWORK"] == "${google_compute_subnetwork.batch.id}"
    for (rtype, name), body in resources.items():
        if rtype == "google_compute_firewall":
            assert body["direction"] == "INGRESS" and "0.0.0.0/0" not in body["source_ranges"], name


# --- hygiene -------------------------------------------------------------------------------------


def test_every_variable_is_typed_and_described(root, module):
    for doc in (root, module):
        for name, body in _named(doc, "variable").items():
            assert body.get("type"), f"variable {name} has no type"
            assert body.get("description", "").strip(), f"variable {name} has no description"
        for name, body in _named(doc, "output").items():
            assert body.get("description", "").strip(), f"output {name} has no description"


def test_provider_versions_are_pinned(root, module):
    for doc in (root, module):
        terraform = _one(doc["terraform"])
        assert terraform["required_version"] == ">= 1.5"
        providers = _one(terraform["required_providers"])
        assert providers["google"]["version"] == ">= 6.0, < 7.0"
    providers = _one(_one(root["terraform"])["required_providers"])
    assert providers["google-beta"]["version"] == ">= 6.0, < 7.0"
    assert re.fullmatch(r">= [\d.]+, < [\d.]+", providers["archive"]["version"])


REFERENCE = re.compile(
    r"(?<![\w.\"-])(?:(data)\.(\w+)\.(\w+)|(var|local)\.(\w+)|module\.(\w+)\.(\w+)|"
    r"(google_[a-z0-9_]+|terraform_data)\.(\w+))"
)


def _expressions(doc):
    """Strings that may hold references (skipping heredoc shell text)."""
    return [s for s in _strings(doc) if "${" in s and not s.startswith("<<")]


@pytest.mark.parametrize("folder", [INFRA, MODULE], ids=["root", "module"])
def test_every_reference_resolves(folder, module):
    doc = _load(folder)
    known = {
        "data": {f"data.{t}.{n}" for t, n in _resources(doc, "data")},
        "var": {f"var.{n}" for n in _named(doc, "variable")},
        "local": {f"local.{n}" for n in _locals(doc)},
        "module": {f"module.{c}.{o}" for c in _named(doc, "module") for o in _named(module, "output")},
        "resource": {f"{t}.{n}" for t, n in _resources(doc)},
    }
    problems = []
    for text in _expressions(doc):
        for m in REFERENCE.finditer(text):
            kind = "data" if m.group(1) else m.group(4) or ("module" if m.group(6) else "resource")
            if m.group(0) not in known[kind]:
                problems.append(m.group(0))
    assert problems == []


def test_module_calls_match_the_module_variables(root, module):
    variables = _named(module, "variable")
    required = {name for name, body in variables.items() if "default" not in body}
    meta = {"source", "depends_on", "for_each", "count", "providers"}
    for name, call in _named(root, "module").items():
        arguments = set(call) - meta
        assert name == "functions" and call["for_each"] == "${local.functions}"
        assert arguments <= set(variables), (name, sorted(arguments - set(variables)))
        assert required <= arguments, (name, sorted(required - arguments))
    entries = _locals(root)["functions"]
    shapes = {name: sorted(entry) for name, entry in entries.items()}
    assert len({tuple(v) for v in shapes.values()}) == 1, shapes  # Terraform iterates one type only
    triggers = [sorted(e["event_trigger"]) for e in entries.values() if e["event_trigger"] is not None]
    assert all(t == triggers[0] for t in triggers), triggers


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "infra"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"terraform fmt would change: {result.stdout}"


def test_default_orchestrator_image_is_the_name_the_build_script_pushes():
    main_tf = (INFRA / "main.tf").read_text()
    script = (INFRA.parent / "scripts" / "build-orchestrator.sh").read_text()
    assert '/${REPOSITORY}/arc-orchestrator"' in script
    assert "/arc-orchestrator:latest" in main_tf
