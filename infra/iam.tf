# Identities and every role they hold. Least privilege: a role is granted on the narrowest resource that
# takes it (bucket, topic, repository, service account, Cloud Run service) and at project level only when
# the permission is checked there (Batch jobs, Cloud SQL, Logging, Eventarc). No primitive roles, and
# nothing runs as the default compute service account: functions, Batch jobs, builds and triggers each
# name their own account. tests/unit/test_infra.py holds the same table and fails on any drift.

# --- Service accounts ----------------------------------------------------------------------------

resource "google_service_account" "functions" {
  for_each = {
    submit_bundle         = "submit"
    runs_api              = "api"
    reconcile_batch_event = "reconcile"
    sweep_stale_runs      = "sweep"
  }

  account_id   = "${var.name_prefix}-${each.value}"
  display_name = "Arc Reactor function ${each.key}"
  description  = "Runtime identity of the ${each.key} Cloud Run function."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "orchestrator" {
  account_id   = "${var.name_prefix}-orchestrator"
  display_name = "Arc Reactor orchestrator"
  description  = "Batch orchestrator VMs: run the workflow engine, launch task jobs, report run status."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "task" {
  account_id   = "${var.name_prefix}-task"
  display_name = "Arc Reactor pipeline tasks"
  description  = "Batch task VMs the engine launches: read inputs and write outputs in the runs bucket."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "eventarc" {
  account_id   = "${var.name_prefix}-eventarc"
  display_name = "Arc Reactor Eventarc triggers"
  description  = "Identity Eventarc uses to deliver events to the event functions."

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-build"
  display_name = "Arc Reactor function builds"
  description  = "Cloud Build identity for building the functions (instead of the default compute account)."

  depends_on = [google_project_service.apis]
}

locals {
  members = merge(
    { for key, sa in google_service_account.functions : key => "serviceAccount:${sa.email}" },
    {
      orchestrator = "serviceAccount:${google_service_account.orchestrator.email}"
      task         = "serviceAccount:${google_service_account.task.email}"
      eventarc     = "serviceAccount:${google_service_account.eventarc.email}"
      build        = "serviceAccount:${google_service_account.build.email}"
      gcs_agent    = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
      pubsub_agent = "serviceAccount:${google_project_service_identity.pubsub.email}"
    },
  )

  # Service accounts that log in to PostgreSQL (IAM database users, database.tf).
  db_service_accounts = merge(
    { for key, sa in google_service_account.functions : key => sa.email },
    { orchestrator = google_service_account.orchestrator.email },
  )

  # --- Project-level roles: the whole table -------------------------------------------------------
  project_roles = {
    # Validates a bundle, copies it to the run folder, creates the orchestrator job.
    submit_bundle = ["roles/batch.jobsEditor", "roles/cloudsql.client", "roles/cloudsql.instanceUser"]
    # Submits, cancels (the orchestrator job and every task job) and recovers runs; reads job logs.
    runs_api = ["roles/batch.jobsEditor", "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/logging.viewer"]
    # Reads the Batch job (jobs.get) and applies the truth.
    reconcile_batch_event = ["roles/batch.jobsViewer", "roles/cloudsql.client", "roles/cloudsql.instanceUser"]
    # Lists and reads Batch jobs of stuck runs.
    sweep_stale_runs = ["roles/batch.jobsViewer", "roles/cloudsql.client", "roles/cloudsql.instanceUser"]
    # Batch agent + logs; creates the engine's task jobs (batch.jobs.create is checked on the project,
    # so jobsEditor cannot be narrowed to the task service account; actAs on it is, below).
    orchestrator = [
      "roles/batch.agentReporter",
      "roles/batch.jobsEditor",
      "roles/cloudsql.client",
      "roles/cloudsql.instanceUser",
      "roles/logging.logWriter",
    ]
    task      = ["roles/batch.agentReporter", "roles/logging.logWriter"]
    eventarc  = ["roles/eventarc.eventReceiver"]
    build     = ["roles/logging.logWriter"]
    gcs_agent = ["roles/pubsub.publisher"] # Storage triggers: Eventarc's transport topic is created later.
  }

  project_role_bindings = merge([
    for who, roles in local.project_roles : {
      for role in roles : "${who} ${role}" => { who = who, role = role }
    }
  ]...)
}

resource "google_project_iam_member" "project_roles" {
  for_each = local.project_role_bindings

  project = var.project_id
  role    = each.value.role
  member  = local.members[each.value.who]
}

# Builds read their source from Cloud Functions' own staging buckets (gcf-v2-sources-*) as well as ours.
resource "google_project_iam_member" "build_gcf_sources_reader" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = local.members.build

  condition {
    title       = "gcf-v2-sources buckets only"
    description = "Function source staging buckets created by Cloud Functions."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
  }
}

# People who run migrations: connect through Cloud SQL as their own IAM database user.
resource "google_project_iam_member" "operators" {
  for_each = {
    for pair in setproduct(var.db_operators, ["roles/cloudsql.client", "roles/cloudsql.instanceUser"]) :
    "${pair[0]} ${pair[1]}" => { email = pair[0], role = pair[1] }
  }

  project = var.project_id
  role    = each.value.role
  member  = "user:${each.value.email}"
}

# --- Buckets -------------------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "inbox_submit_viewer" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = local.members.submit_bundle
}

# Writes <submission>/run.yaml.accepted.json or .rejected.json next to the manifest; never deletes.
resource "google_storage_bucket_iam_member" "inbox_submit_creator" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectCreator"
  member = local.members.submit_bundle
}

# People and groups who drop bundles: create, re-upload a manifest (a new generation is a new run, and
# overwriting needs delete), read the accepted/rejected feedback.
resource "google_storage_bucket_iam_member" "inbox_uploaders" {
  for_each = toset(var.inbox_uploader_members)

  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectUser"
  member = each.value
}

resource "google_storage_bucket_iam_member" "runs_submit_admin" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectAdmin"
  member = local.members.submit_bundle
}

resource "google_storage_bucket_iam_member" "runs_api_admin" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectAdmin"
  member = local.members.runs_api
}

# Reads the outcome an orchestrator hook left when the database was unreachable (runs/<id>/hook-status.json).
resource "google_storage_bucket_iam_member" "runs_reconcile_viewer" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectViewer"
  member = local.members.reconcile_batch_event
}

resource "google_storage_bucket_iam_member" "runs_orchestrator_admin" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectAdmin"
  member = local.members.orchestrator
}

resource "google_storage_bucket_iam_member" "runs_task_admin" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectAdmin"
  member = local.members.task
}

resource "google_storage_bucket_iam_member" "functions_source_build_viewer" {
  bucket = google_storage_bucket.functions_source.name
  role   = "roles/storage.objectViewer"
  member = local.members.build
}

# --- Service accounts as resources (who may act as whom) -----------------------------------------

# Creating a Batch job that runs as the orchestrator account.
resource "google_service_account_iam_member" "orchestrator_user_submit" {
  service_account_id = google_service_account.orchestrator.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.members.submit_bundle
}

resource "google_service_account_iam_member" "orchestrator_user_api" {
  service_account_id = google_service_account.orchestrator.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.members.runs_api
}

# The orchestrator creates the engine's task jobs, which run as the task account.
resource "google_service_account_iam_member" "task_user_orchestrator" {
  service_account_id = google_service_account.task.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.members.orchestrator
}

# Pub/Sub mints the OIDC tokens of Eventarc's push deliveries (needed in projects created before
# April 2021; harmless after).
resource "google_service_account_iam_member" "eventarc_token_creator_pubsub_agent" {
  service_account_id = google_service_account.eventarc.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.members.pubsub_agent
}

# --- Topics --------------------------------------------------------------------------------------

# Batch publishes a job's notifications as the job's service account.
resource "google_pubsub_topic_iam_member" "batch_notifications_orchestrator_publisher" {
  topic  = google_pubsub_topic.batch_notifications.name
  role   = "roles/pubsub.publisher"
  member = local.members.orchestrator
}

# Pub/Sub forwards undeliverable events as its service agent (it also needs pubsub.subscriber on each
# Eventarc subscription, granted by the same gcloud step that attaches the policy: modules/function).
resource "google_pubsub_topic_iam_member" "dead_letter_pubsub_agent_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.members.pubsub_agent
}

# --- Artifact Registry ---------------------------------------------------------------------------

resource "google_artifact_registry_repository_iam_member" "orchestrator_repo_orchestrator_reader" {
  location   = google_artifact_registry_repository.orchestrator.location
  repository = google_artifact_registry_repository.orchestrator.name
  role       = "roles/artifactregistry.reader"
  member     = local.members.orchestrator
}

resource "google_artifact_registry_repository_iam_member" "orchestrator_repo_task_reader" {
  location   = google_artifact_registry_repository.orchestrator.location
  repository = google_artifact_registry_repository.orchestrator.name
  role       = "roles/artifactregistry.reader"
  member     = local.members.task
}

resource "google_artifact_registry_repository_iam_member" "functions_repo_build_writer" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = local.members.build
}
