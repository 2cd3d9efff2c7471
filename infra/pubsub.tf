# Pub/Sub: Batch state-change notifications, dead letters, and the sweeper's schedule.

# Every orchestrator job names this topic in its notifications (ARC_BATCH_TOPIC); the orchestrator
# service account publishes to it (iam.tf). reconcile_batch_event is triggered from it.
resource "google_pubsub_topic" "batch_notifications" {
  name                       = "${var.name_prefix}-batch-notifications"
  message_retention_duration = "86400s"

  depends_on = [google_project_service.apis]
}

# Events that failed max delivery attempts land here. The pull subscription below is only for people:
# inspect with `gcloud pubsub subscriptions pull <name> --limit 10` (docs/deploy.md).
#
# Terraform cannot attach this topic to the event functions' subscriptions: Eventarc creates and owns
# them, and neither google_cloudfunctions2_function nor google_eventarc_trigger exposes a dead-letter
# policy (hashicorp/terraform-provider-google#17697, #25069). modules/function attaches it with gcloud
# after each deploy (var.attach_dead_letter_policy); docs/deploy.md has the same commands by hand.
resource "google_pubsub_topic" "dead_letter" {
  name                       = "${var.name_prefix}-dead-letter"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_subscription" "dead_letter" {
  name                       = "${var.name_prefix}-dead-letter-inspect"
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  # Never expire for inactivity: it may sit unread for months, which is the good case.
  expiration_policy {
    ttl = ""
  }
}

# Cloud Scheduler publishes here every 10 minutes; sweep_stale_runs is triggered from it.
resource "google_pubsub_topic" "sweep" {
  name                       = "${var.name_prefix}-sweep"
  message_retention_duration = "3600s"

  depends_on = [google_project_service.apis]
}

resource "google_cloud_scheduler_job" "sweep" {
  name        = "${var.name_prefix}-sweep-stale-runs"
  description = "Triggers sweep_stale_runs, which reconciles runs stuck in submitted or running."
  region      = var.region
  schedule    = var.sweep_schedule
  time_zone   = "Etc/UTC"

  # A missed tick is harmless: the next one sweeps the same runs.
  retry_config {
    retry_count = 0
  }

  pubsub_target {
    topic_name = google_pubsub_topic.sweep.id
    data       = base64encode(jsonencode({ source = "cloud-scheduler" }))
  }

  depends_on = [google_project_service.apis]
}
