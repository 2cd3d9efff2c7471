output "inbox_bucket" {
  description = "Bucket to drop run bundles into (gs://<inbox>/<submission>/..., run.yaml last)."
  value       = google_storage_bucket.inbox.name
}

output "runs_bucket" {
  description = "Bucket holding runs/<run_id>/, work/<lineage_id>/ and cache/<lineage_id>/."
  value       = google_storage_bucket.runs.name
}

output "runs_api_url" {
  description = "URL of the runs API (call it with an identity token for this URL: gcloud auth print-identity-token)."
  # The deterministic Cloud Run URL, which is also the audience the API checks (ARC_SERVICE_URL).
  value = local.runs_api_url
}

output "orchestrator_image" {
  description = "Image the functions launch orchestrator jobs with; build and push it here."
  value       = local.orchestrator_image
}

output "orchestrator_repository" {
  description = "Docker host path of the orchestrator repository."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.orchestrator.repository_id}"
}

output "cloudsql_instance" {
  description = "Cloud SQL connection name, project:region:instance (ARC_CLOUDSQL_INSTANCE)."
  value       = google_sql_database_instance.arc.connection_name
}

output "cloudsql_private_ip" {
  description = "Private IP of the database, reachable from the VPC only (for psql from an ops VM)."
  value       = google_sql_database_instance.arc.private_ip_address
}

output "db_name" {
  description = "Database name (ARC_DB_NAME)."
  value       = google_sql_database.arc.name
}

output "db_iam_users" {
  description = "IAM database user of each service account that logs in to PostgreSQL."
  value       = { for key, user in google_sql_user.service_accounts : key => user.name }
}

output "batch_topic" {
  description = "Batch notifications topic, projects/P/topics/T (ARC_BATCH_TOPIC)."
  value       = google_pubsub_topic.batch_notifications.id
}

output "dead_letter_subscription" {
  description = "Pull subscription for inspecting events that exhausted their deliveries."
  value       = google_pubsub_subscription.dead_letter.name
}

output "eventarc_triggers" {
  description = "Eventarc trigger of each event function (their subscriptions carry the dead-letter policy)."
  value = {
    submit_bundle         = module.functions["submit_bundle"].trigger
    reconcile_batch_event = module.functions["reconcile_batch_event"].trigger
    sweep_stale_runs      = module.functions["sweep_stale_runs"].trigger
  }
}

output "service_accounts" {
  description = "E-mail of every service account the deployment created."
  value = merge(
    { for key, sa in google_service_account.functions : key => sa.email },
    {
      orchestrator = google_service_account.orchestrator.email
      task         = google_service_account.task.email
      eventarc     = google_service_account.eventarc.email
      build        = google_service_account.build.email
    },
  )
}

output "subnetwork" {
  description = "Subnetwork Batch VMs (and an ops VM for migrations) run in."
  value       = google_compute_subnetwork.batch.name
}

output "function_environment" {
  description = "ARC_* settings the functions run with, for the arc CLI (add ARC_DB_IAM_USER yourself)."
  value       = local.function_environment
}

output "connection_budget" {
  description = "Cloud SQL connections the deployment can use at most, against max_connections."
  value = {
    max_connections  = var.db_max_connections
    needed           = local.db_connections_needed
    per_instance     = local.db_connections_per_instance
    function_max_sum = local.db_function_instances
  }
}

output "demo_data_bucket" {
  description = "The bucket with the demo bundle's FASTQ files (null when demo_data is false)."
  value       = var.demo_data ? google_storage_bucket.demo_data[0].name : null
}

output "region" {
  description = "The region of the functions, Batch jobs and buckets."
  value       = var.region
}
