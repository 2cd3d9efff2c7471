# Arc Reactor: the whole deployment. One root module, split by concern:
#   main.tf        APIs, service agents, shared names
#   network.tf     VPC, subnetwork (Private Google Access), Cloud NAT, VPC connector, private services access
#   storage.tf     inbox, runs and function-source buckets
#   pubsub.tf      Batch notifications, dead letters, sweeper schedule
#   database.tf    Cloud SQL for PostgreSQL 16 and the connection budget
#   registry.tf    Artifact Registry repositories
#   functions.tf   the four Cloud Run functions (modules/function)
#   iam.tf         service accounts and every role binding, in one table
# docs/deploy.md walks from an empty project to a first run.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  labels = merge(var.labels, { app = "arc-reactor" })

  inbox_bucket = var.inbox_bucket_name != "" ? var.inbox_bucket_name : "${var.project_id}-${var.name_prefix}-inbox"
  runs_bucket  = var.runs_bucket_name != "" ? var.runs_bucket_name : "${var.project_id}-${var.name_prefix}-runs"
  # The demo's FASTQ files (storage.tf), for the first run of docs/deploy.md.
  demo_data_bucket = "${var.project_id}-${var.name_prefix}-demo-data"

  orchestrator_image = (
    var.orchestrator_image != ""
    ? var.orchestrator_image
    : "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.orchestrator.repository_id}/arc-orchestrator:latest"
  )
}

# Enabling an API is idempotent and other things in the project may rely on it: never disable on destroy.
resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com",
    "batch.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudidentity.googleapis.com", # members of the admin and reader groups (ARC_GROUP_LOOKUP)
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
    "vpcaccess.googleapis.com",
  ])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Service agents are created lazily by Google; create them now so the IAM grants below can name them.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta
  project  = var.project_id
  service  = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}

# Cloud Storage's service agent publishes object events for the inbox trigger.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.apis]
}
