# Identities and every role they hold. Least privilege: a role is granted on the narrowest resource that
# takes it (bucket, topic, repository, service account, Cloud Run service) and at project level only when
# the permission is checked there (Batch jobs, Cloud SQL, Logging, Eventarc). No primitive roles, and
# nothing runs as the default compute service account: functions, Batch jobs, builds and triggers each
# name their own account. tests/unit/test_infra.py holds the same table and fails on any drift.
#
# Every grant says what it is for and cites the Google Cloud page that requires it. Role contents, when a
# comment relies on them:
#   https://cloud.google.com/iam/docs/roles-permissions/batch
#   https://cloud.google.com/storage/docs/access-control/iam-roles
#   https://cloud.google.com/run/docs/reference/iam/roles

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
  #
  # Why each role is project-level, and the page that requires it:
  #   roles/batch.jobsEditor         create, cancel and delete Batch jobs; batch.jobs.create is checked on
  #                                  the project. https://cloud.google.com/batch/docs/create-run-job-custom-service-account
  #                                  https://cloud.google.com/batch/docs/cancel-job
  #                                  https://cloud.google.com/batch/docs/delete-job
  #   roles/batch.jobsViewer         read Batch jobs (jobs.get, jobs.list) and nothing else.
  #                                  https://cloud.google.com/iam/docs/roles-permissions/batch
  #   roles/batch.agentReporter      every Batch job's service account, so its VMs report their state.
  #                                  https://cloud.google.com/batch/docs/get-started#prerequisites
  #   roles/logging.logWriter        a Batch job's service account, to let the job write its logs to Cloud
  #                                  Logging: https://cloud.google.com/batch/docs/get-started#prerequisites
  #                                  The build service account, for the build logs:
  #                                  https://cloud.google.com/functions/docs/securing/build-custom-sa
  #   roles/serviceusage.serviceUsageConsumer  requests billed to the project (a userProject parameter), as
  #                                  snakemake-storage-plugin-gcs makes them (serviceusage.services.use).
  #                                  https://cloud.google.com/storage/docs/requester-pays#requirements
  #   roles/logging.viewer           read log entries (the API's run logs).
  #                                  https://cloud.google.com/logging/docs/access-control
  #   roles/cloudsql.client          connect through the Cloud SQL Python connector (cloudsql.instances.connect).
  #                                  https://cloud.google.com/sql/docs/postgres/connect-connectors
  #   roles/cloudsql.instanceUser    log in with IAM database authentication (cloudsql.instances.login).
  #                                  https://cloud.google.com/sql/docs/postgres/iam-logins
  #   roles/eventarc.eventReceiver   the trigger service account of a Cloud Storage (direct event) trigger;
  #                                  not needed for the two Pub/Sub triggers, but one account serves all three.
  #                                  https://cloud.google.com/eventarc/docs/roles-permissions
  #   roles/pubsub.publisher         the Cloud Storage service agent, for Cloud Storage triggers: Eventarc
  #                                  creates its transport topic when it creates the trigger, so no narrower
  #                                  resource exists beforehand. https://cloud.google.com/eventarc/docs/roles-permissions
  project_roles = {
    # Validates a bundle, copies it to the run folder, creates the orchestrator job.
    submit_bundle = ["roles/batch.jobsEditor", "roles/cloudsql.client", "roles/cloudsql.instanceUser"]
    # Submits, cancels (the orchestrator job and every task job) and recovers runs; reads job logs.
    runs_api = ["roles/batch.jobsEditor", "roles/cloudsql.client", "roles/cloudsql.instanceUser", "roles/logging.viewer"]
    # Reads the Batch job (jobs.get) and applies the truth.
    reconcile_batch_event = ["roles/batch.jobsViewer", "roles/cloudsql.client", "roles/cloudsql.instanceUser"]
    # Lists the Batch jobs of stuck runs, and cancels them (deletes where Batch refuses to cancel) when a run
    # is being cancelled or is over its time limit (services/sweep.py, adapters/batch.py cancel_run_jobs).
    # Cancelling needs Batch Job Editor; jobsViewer holds only jobs.get and jobs.list.
    sweep_stale_runs = ["roles/batch.jobsEditor", "roles/cloudsql.client", "roles/cloudsql.instanceUser"]
    # Batch agent + logs; creates the engine's task jobs (batch.jobs.create is checked on the project,
    # so jobsEditor cannot be narrowed to the task service account; actAs on it is, below).
    orchestrator = [
      "roles/batch.agentReporter",
      "roles/batch.jobsEditor",
      "roles/cloudsql.client",
      "roles/cloudsql.instanceUser",
      "roles/logging.logWriter",
    ]
    # Snakemake's task jobs use the GCS storage plugin, whose requests name the project (userProject):
    # that needs serviceusage.services.use (docs/snakemake.md).
    task      = ["roles/batch.agentReporter", "roles/logging.logWriter", "roles/serviceusage.serviceUsageConsumer"]
    eventarc  = ["roles/eventarc.eventReceiver"]
    build     = ["roles/logging.logWriter"]
    gcs_agent = ["roles/pubsub.publisher"]
  }

  project_role_bindings = merge([
    for who, roles in local.project_roles : {
      for role in roles : "${who} ${role}" => { who = who, role = role }
    }
  ]...)
}

# One member per (identity, role) of the table above, whose legend cites each role's page. Granting roles
# on a project: https://cloud.google.com/iam/docs/granting-changing-revoking-access
resource "google_project_iam_member" "project_roles" {
  for_each = local.project_role_bindings

  project = var.project_id
  role    = each.value.role
  member  = local.members[each.value.who]
}

# runs_api reads a run's billed cost from the billing export (adapters/billing.py) when billing_export_table
# is set; the export may live in another project. Nothing is granted when it is empty.
locals {
  billing_export = var.billing_export_table == "" ? [] : [split(".", var.billing_export_table)]
}

# BigQuery Job User on runs_api's own project, to run the query (bigquery.jobs.create):
# https://cloud.google.com/bigquery/docs/access-control#bigquery.jobUser
resource "google_project_iam_member" "runs_api_bigquery_jobs" {
  count = length(local.billing_export)

  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = local.members.runs_api
}

# BigQuery Data Viewer on the export's dataset only, to read its table (bigquery.tables.getData):
# https://cloud.google.com/bigquery/docs/access-control#bigquery.dataViewer
resource "google_bigquery_dataset_iam_member" "runs_api_billing_reader" {
  count = length(local.billing_export)

  project    = local.billing_export[0][0]
  dataset_id = local.billing_export[0][1]
  role       = "roles/bigquery.dataViewer"
  member     = local.members.runs_api
}

# Function builds read their source from Cloud Functions' own source buckets. Cloud Functions copies the
# archive named in build_config (our functions_source bucket) to gcf-v2-sources-PROJECT_NUMBER-REGION and
# Cloud Build fetches it from there: https://cloud.google.com/functions/docs/building and
# https://cloud.google.com/functions/docs/tutorials/terraform. So the build account needs nothing on our
# bucket, and only read on those buckets (the condition; resource names:
# https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name).
# Storage Object Viewer, not Object Admin: the Cloud Functions page lists Storage Object Admin (with Logs
# Writer and Artifact Registry Writer) for retrieving the function source
# (https://cloud.google.com/functions/docs/securing/build-custom-sa), but the role Google defines for
# exactly this job, Cloud Run Builder (roles/run.builder, "Can build Cloud Run functions and source
# deployed services", the role https://cloud.google.com/run/docs/configuring/services/build-service-account
# now asks for), holds storage.objects.get and no storage write or delete permission
# (https://cloud.google.com/run/docs/reference/iam/roles); a build denied access asks for Storage Object
# Viewer (hashicorp/terraform-provider-google#20571). Object Admin would let a build rewrite or delete the
# sources of every function in the project.
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

# People who run migrations: connect through the Cloud SQL Python connector as their own IAM database
# user (docs/deploy.md). https://cloud.google.com/sql/docs/postgres/connect-connectors (cloudsql.client)
# and https://cloud.google.com/sql/docs/postgres/iam-logins (cloudsql.instanceUser).
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
#
# Role contents: https://cloud.google.com/storage/docs/access-control/iam-roles. The read-write grants
# are Storage Object User (create, view, list, update and delete objects; no ACL or IAM-policy
# permissions). Storage Object Admin is all of storage.objects.*, which adds the object ACL/IAM-policy
# permissions and more that nothing here uses.

# Reads a bundle (run.yaml and the files next to it) when its manifest lands.
# https://cloud.google.com/storage/docs/access-control/iam-roles (Storage Object Viewer: objects.get, list)
resource "google_storage_bucket_iam_member" "inbox_submit_viewer" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectViewer"
  member = local.members.submit_bundle
}

# Writes <submission>/run.yaml.accepted.json or .rejected.json next to the manifest, and nothing else.
# The same name is written again when the manifest is re-uploaded (a new run) or an event is redelivered
# (a duplicate), and replacing an object needs storage.objects.delete, which Storage Object Creator does
# not have ("Does not give permission to view, delete, or replace objects",
# https://cloud.google.com/storage/docs/access-control/iam-roles). Storage Object User, limited by the
# condition to the feedback files, so the function still cannot delete or change what users upload
# (resource names: https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name).
resource "google_storage_bucket_iam_member" "inbox_submit_feedback" {
  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectUser"
  member = local.members.submit_bundle

  condition {
    title       = "submission feedback files only"
    description = "run.yaml.accepted.json / run.yaml.rejected.json written next to each manifest."
    expression  = "resource.name.endsWith(\".accepted.json\") || resource.name.endsWith(\".rejected.json\")"
  }
}

# People and groups who drop bundles: create, re-upload a manifest (a new generation is a new run, and
# overwriting needs delete), read the accepted/rejected feedback.
# https://cloud.google.com/storage/docs/access-control/iam-roles (Storage Object User)
resource "google_storage_bucket_iam_member" "inbox_uploaders" {
  for_each = toset(var.inbox_uploader_members)

  bucket = google_storage_bucket.inbox.name
  role   = "roles/storage.objectUser"
  member = each.value
}

# People who read runs' files with their own tools (gsutil, a notebook, IGV): object reads under runs/
# only, so the engines' work/ and cache/ files stay out of reach. The bucket-type clause is what lets them
# list objects (a listing is checked against the bucket, not an object: it shows names, never contents).
# Per-run access for everyone else goes through the API's signed URLs (GET /runs/{id}/results).
# https://cloud.google.com/storage/docs/access-control/iam-roles (Storage Object Viewer)
# https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name
resource "google_storage_bucket_iam_member" "runs_results_readers" {
  for_each = toset(var.results_reader_members)

  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectViewer"
  member = each.value

  condition {
    title       = "run folders only"
    description = "Inputs, results and logs under runs/; not the work dirs or the resume cache."
    expression  = "resource.type == \"storage.googleapis.com/Bucket\" || resource.name.startsWith(\"projects/_/buckets/${local.runs_bucket}/objects/runs/\")"
  }
}

# Copies the bundle to runs/<id>/inputs/ (a redelivery rewrites it) and reads and fills the schema cache.
# https://cloud.google.com/storage/docs/access-control/iam-roles (Storage Object User)
resource "google_storage_bucket_iam_member" "runs_submit_user" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = local.members.submit_bundle
}

# Submits and recovers runs: writes a run's inputs, reads a parent run's files, checks its work dir.
# https://cloud.google.com/storage/docs/access-control/iam-roles (Storage Object User)
resource "google_storage_bucket_iam_member" "runs_api_user" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = local.members.runs_api
}

# Reads the outcome an orchestrator hook left when the database was unreachable (runs/<id>/hook-status.json).
# https://cloud.google.com/storage/docs/access-control/iam-roles (Storage Object Viewer)
resource "google_storage_bucket_iam_member" "runs_reconcile_viewer" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectViewer"
  member = local.members.reconcile_batch_event
}

# The workflow engine's work dir, resume cache, inputs, results and logs (read, write, replace; the
# work/ lifecycle rule does the deleting). https://cloud.google.com/storage/docs/access-control/iam-roles
resource "google_storage_bucket_iam_member" "runs_orchestrator_user" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = local.members.orchestrator
}

# Task VMs mount the work bucket with Cloud Storage FUSE and read and write task files; Storage Object User
# is the role the FUSE page asks for to mount, read and write:
# https://cloud.google.com/storage/docs/cloud-storage-fuse/mount-bucket
resource "google_storage_bucket_iam_member" "runs_task_user" {
  bucket = google_storage_bucket.runs.name
  role   = "roles/storage.objectUser"
  member = local.members.task
}

# No grant on the functions_source bucket: builds read Cloud Functions' copy (build_gcf_sources_reader).

# --- Service accounts as resources (who may act as whom) -----------------------------------------

# Creating a Batch job that runs as the orchestrator account needs Service Account User on that account.
# https://cloud.google.com/batch/docs/create-run-job-custom-service-account
resource "google_service_account_iam_member" "orchestrator_user_submit" {
  service_account_id = google_service_account.orchestrator.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.members.submit_bundle
}

# Same, for runs the API submits or recovers.
# https://cloud.google.com/batch/docs/create-run-job-custom-service-account
resource "google_service_account_iam_member" "orchestrator_user_api" {
  service_account_id = google_service_account.orchestrator.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.members.runs_api
}

# GET /runs/{id}/results signs short-lived download URLs as the API's own account. A Cloud Run function
# has no key, so the storage client signs through the IAM Credentials signBlob API, which needs
# iam.serviceAccounts.signBlob on the signing account: Service Account Token Creator, here on itself only.
# https://cloud.google.com/storage/docs/authentication/creating-signatures (the signBlob permission "is
# included in the roles/iam.serviceAccountTokenCreator role")
resource "google_service_account_iam_member" "api_signs_as_itself" {
  service_account_id = google_service_account.functions["runs_api"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.members.runs_api
}

# The orchestrator creates the engine's task jobs, which run as the task account.
# https://cloud.google.com/batch/docs/create-run-job-custom-service-account
resource "google_service_account_iam_member" "task_user_orchestrator" {
  service_account_id = google_service_account.task.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.members.orchestrator
}

# Pub/Sub mints the OIDC tokens of Eventarc's push deliveries, which carry the trigger account's identity:
# required when the Pub/Sub service agent was enabled on or before April 8, 2021, harmless after.
# https://cloud.google.com/eventarc/docs/roles-permissions (granted there on the project; here only on
# the one account whose tokens it mints).
resource "google_service_account_iam_member" "eventarc_token_creator_pubsub_agent" {
  service_account_id = google_service_account.eventarc.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.members.pubsub_agent
}

# --- Topics --------------------------------------------------------------------------------------

# Batch publishes a job's notifications as the job's service account (the orchestrator job's; task jobs
# send none). https://cloud.google.com/batch/docs/enable-notifications
resource "google_pubsub_topic_iam_member" "batch_notifications_orchestrator_publisher" {
  topic  = google_pubsub_topic.batch_notifications.name
  role   = "roles/pubsub.publisher"
  member = local.members.orchestrator
}

# Pub/Sub forwards undeliverable events as its service agent (it also needs pubsub.subscriber on each
# Eventarc subscription, granted by the same gcloud step that attaches the policy: modules/function).
# https://cloud.google.com/pubsub/docs/dead-letter-topics (grant forwarding permissions)
resource "google_pubsub_topic_iam_member" "dead_letter_pubsub_agent_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.members.pubsub_agent
}

# --- Artifact Registry ---------------------------------------------------------------------------

# Batch pulls the orchestrator image as the job's service account.
# https://cloud.google.com/artifact-registry/docs/access-control (Artifact Registry Reader)
resource "google_artifact_registry_repository_iam_member" "orchestrator_repo_orchestrator_reader" {
  location   = google_artifact_registry_repository.orchestrator.location
  repository = google_artifact_registry_repository.orchestrator.name
  role       = "roles/artifactregistry.reader"
  member     = local.members.orchestrator
}

# For pipeline containers kept in this repository (a task job pulls its image as the task account).
# https://cloud.google.com/artifact-registry/docs/access-control (Artifact Registry Reader). Not needed by
# anything in this repository's code: task jobs run the images their pipelines name.
resource "google_artifact_registry_repository_iam_member" "orchestrator_repo_task_reader" {
  location   = google_artifact_registry_repository.orchestrator.location
  repository = google_artifact_registry_repository.orchestrator.name
  role       = "roles/artifactregistry.reader"
  member     = local.members.task
}

# Builds push the function images (and their build cache) here: build_config.docker_repository names this
# repository, so the build account needs Artifact Registry Writer on it and on no other.
# https://cloud.google.com/functions/docs/securing/build-custom-sa
resource "google_artifact_registry_repository_iam_member" "functions_repo_build_writer" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = local.members.build
}

# --- Input buckets ---------------------------------------------------------------------------------

locals {
  # Who reads the files a samplesheet names: submit_bundle and runs_api check that they exist before a run
  # is accepted (nf-schema's `exists`), the orchestrator stages them (Snakemake) and the task VMs read them
  # (Nextflow's tasks read gs:// inputs themselves).
  input_readers = ["submit_bundle", "runs_api", "orchestrator", "task"]
  input_buckets = concat(var.demo_data ? [local.demo_data_bucket] : [], var.input_buckets)
  input_reader_grants = {
    for pair in setproduct(local.input_readers, local.input_buckets) : "${pair[0]}/${pair[1]}" => {
      who    = pair[0]
      bucket = pair[1]
    }
  }
}

# Read-only, object level, on each input bucket; nothing else of those buckets is visible.
# https://cloud.google.com/storage/docs/access-control/iam-roles (Storage Object Viewer: list and read objects)
resource "google_storage_bucket_iam_member" "input_readers" {
  for_each = local.input_reader_grants

  bucket = each.value.bucket
  role   = "roles/storage.objectViewer"
  member = local.members[each.value.who]

  depends_on = [google_storage_bucket.demo_data]
}
