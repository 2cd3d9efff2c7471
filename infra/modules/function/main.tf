# One Cloud Run function (2nd gen): the function, who may invoke it, and (for event functions) the
# dead-letter policy on its Eventarc subscription. Its runtime service account and that account's roles
# live in the root module (iam.tf), so every grant of the deployment is in one table.

resource "google_cloudfunctions2_function" "this" {
  project     = var.project_id
  location    = var.region
  name        = var.name
  description = var.description

  build_config {
    runtime           = "python311"
    entry_point       = var.entry_point
    service_account   = var.build_service_account
    docker_repository = var.docker_repository

    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = var.service_account_email
    min_instance_count               = 0
    max_instance_count               = var.max_instances
    max_instance_request_concurrency = var.concurrency
    available_cpu                    = var.cpu
    available_memory                 = var.memory
    timeout_seconds                  = var.timeout_seconds
    ingress_settings                 = var.ingress
    all_traffic_on_latest_revision   = true
    vpc_connector                    = var.vpc_connector
    vpc_connector_egress_settings    = "PRIVATE_RANGES_ONLY"

    environment_variables = merge(var.environment, {
      ARC_DB_IAM_USER = trimsuffix(var.service_account_email, ".gserviceaccount.com")
    })
  }

  dynamic "event_trigger" {
    for_each = var.event_trigger == null ? [] : [var.event_trigger]
    content {
      trigger_region        = var.region
      event_type            = event_trigger.value.event_type
      pubsub_topic          = event_trigger.value.pubsub_topic
      service_account_email = event_trigger.value.service_account_email
      # Always retry: a function raises only on transient failures (DB down, Batch UNAVAILABLE) and
      # handles permanent ones itself, so a redelivery is what it asks for.
      retry_policy = "RETRY_POLICY_RETRY"

      dynamic "event_filters" {
        for_each = event_trigger.value.event_filters
        content {
          attribute = event_filters.key
          value     = event_filters.value
        }
      }
    }
  }
}

# Name == Cloud Run service name for 2nd gen functions; run.invoker is checked on the service: "2nd gen
# functions need the Cloud Run Invoker role" (https://cloud.google.com/functions/docs/reference/iam/roles).
# Callers are the Eventarc trigger account for event functions ("The Cloud Run Invoker role allows your
# Eventarc trigger to call the target Cloud Run service", https://cloud.google.com/eventarc/docs/roles-permissions)
# and var.api_invoker_members for runs_api (https://cloud.google.com/run/docs/securing/managing-access).
resource "google_cloud_run_service_iam_member" "invoker" {
  for_each = var.invoker_members

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this.name
  role     = "roles/run.invoker"
  member   = each.value
}

# Eventarc creates and owns the trigger's Pub/Sub subscription, and Terraform cannot set a dead-letter
# policy on it (see pubsub.tf). Attach one with gcloud after every change of the trigger. If the trigger
# is ever recreated outside Terraform, taint this resource or run the commands in docs/deploy.md.
# The one grant made here: roles/pubsub.subscriber for the Pub/Sub service agent on that subscription, so
# it can forward undeliverable events (https://cloud.google.com/pubsub/docs/dead-letter-topics).
resource "terraform_data" "dead_letter" {
  count = var.event_trigger != null && var.dead_letter != null ? 1 : 0

  triggers_replace = [
    google_cloudfunctions2_function.this.event_trigger[0].trigger,
    var.dead_letter.topic,
    var.dead_letter.max_delivery_attempts,
  ]

  provisioner "local-exec" {
    interpreter = ["/usr/bin/env", "bash", "-c"]
    command     = <<-EOT
      set -euo pipefail
      sub="$(gcloud eventarc triggers describe "$TRIGGER" --project "$PROJECT" --location "$REGION" \
        --format 'value(transport.pubsub.subscription)')"
      gcloud pubsub subscriptions update "$sub" --project "$PROJECT" \
        --dead-letter-topic "$TOPIC" --max-delivery-attempts "$ATTEMPTS"
      # Pub/Sub forwards to the dead-letter topic as its service agent, which must be able to ack here
      # (roles/pubsub.subscriber on the source subscription; the topic side is in iam.tf):
      # https://cloud.google.com/pubsub/docs/dead-letter-topics
      gcloud pubsub subscriptions add-iam-policy-binding "$sub" --project "$PROJECT" \
        --member "$AGENT" --role roles/pubsub.subscriber >/dev/null
    EOT
    environment = {
      PROJECT  = var.project_id
      REGION   = var.region
      TRIGGER  = basename(google_cloudfunctions2_function.this.event_trigger[0].trigger)
      TOPIC    = var.dead_letter.topic
      ATTEMPTS = tostring(var.dead_letter.max_delivery_attempts)
      AGENT    = var.dead_letter.pubsub_service_agent
    }
  }
}
