# The four Cloud Run functions (2nd gen), all built from functions/ (entry points in functions/main.py).

locals {
  # What every function reads (functions/arc_reactor/settings.py: ARC_<FIELD>). ARC_DB_IAM_USER is per
  # function and is added by the module from the function's own service account.
  function_environment = {
    ARC_PROJECT                      = var.project_id
    ARC_REGION                       = var.region
    ARC_INBOX_BUCKET                 = google_storage_bucket.inbox.name
    ARC_RUNS_BUCKET                  = google_storage_bucket.runs.name
    ARC_ORCHESTRATOR_IMAGE           = local.orchestrator_image
    ARC_ORCHESTRATOR_SERVICE_ACCOUNT = google_service_account.orchestrator.email
    ARC_TASK_SERVICE_ACCOUNT         = google_service_account.task.email
    ARC_BATCH_TOPIC                  = google_pubsub_topic.batch_notifications.id
    ARC_NETWORK                      = google_compute_network.arc.id
    ARC_SUBNETWORK                   = google_compute_subnetwork.batch.id
    ARC_NO_EXTERNAL_IP               = "true"
    ARC_CLOUDSQL_INSTANCE            = google_sql_database_instance.arc.connection_name
    ARC_DB_NAME                      = google_sql_database.arc.name
    ARC_DB_POOL_SIZE                 = tostring(var.db_pool_size)
    ARC_DB_MAX_OVERFLOW              = tostring(var.db_max_overflow)
    ARC_ADMIN_GROUP                  = var.admin_group
    ARC_READER_MEMBERS               = join(",", var.reader_members)
    ARC_GROUP_LOOKUP                 = tostring(var.group_lookup)
    ARC_MAX_EVENT_AGE_SECONDS        = tostring(var.max_event_age_seconds)
    ARC_BILLING_EXPORT_TABLE         = var.billing_export_table
    ARC_IAP_AUDIENCES                = var.iap_audiences
    ARC_SNAKEMAKE_EXECUTOR           = var.snakemake_executor
    # The audience runs_api checks ID tokens against (never the request's Host header): its deterministic
    # Cloud Run URL, known before the function exists.
    ARC_SERVICE_URL = local.runs_api_url
  }
  runs_api_url = "https://${var.name_prefix}-runs-api-${data.google_project.this.number}.${var.region}.run.app"

  # Shared by every function module call.
  function_defaults = {
    source_bucket         = google_storage_bucket.functions_source.name
    source_object         = google_storage_bucket_object.functions_source.name
    build_service_account = google_service_account.build.id
    docker_repository     = google_artifact_registry_repository.functions.id
    vpc_connector         = google_vpc_access_connector.functions.id
  }

  # Pub/Sub forwards undeliverable events as its service agent; reading the topic name from the IAM
  # binding makes the dead-letter attachment wait for that grant.
  dead_letter = var.attach_dead_letter_policy ? {
    topic                 = google_pubsub_topic_iam_member.dead_letter_pubsub_agent_publisher.topic
    max_delivery_attempts = var.dead_letter_max_delivery_attempts
    pubsub_service_agent  = local.members.pubsub_agent
  } : null
}

# One entry per function: what differs between them. Every entry has the same attributes (null or {} where
# a function has none), so Terraform can iterate the map.
locals {
  functions = {
    submit_bundle = {
      description     = "Submits a run when a bundle's run.yaml lands in the inbox bucket."
      max_instances   = var.function_max_instances.submit_bundle
      concurrency     = 1
      timeout_seconds = 300
      ingress         = "ALLOW_INTERNAL_ONLY"
      event_trigger = {
        event_type            = "google.cloud.storage.object.v1.finalized"
        service_account_email = google_service_account.eventarc.email
        pubsub_topic          = null
        event_filters         = { bucket = google_storage_bucket.inbox.name }
      }
      invoker_members = { eventarc = local.members.eventarc }
      dead_letter     = local.dead_letter
    }
    runs_api = {
      description   = "HTTP API: submit, list, watch (SSE), cancel and recover runs. IAM invokers only."
      max_instances = var.function_max_instances.runs_api
      concurrency   = var.runs_api_concurrency
      # SSE streams stay open; Cloud Run cuts a request at the timeout and the client reconnects.
      timeout_seconds = 3600
      # Reachable from users' machines, but Cloud Run rejects any caller without run.invoker. The
      # orchestrator's Tower relay calls it too, with Nextflow's task reports (orchestrator/relay.py).
      ingress         = "ALLOW_ALL"
      event_trigger   = null
      invoker_members = merge({ for m in var.api_invoker_members : m => m }, { orchestrator = local.members.orchestrator })
      dead_letter     = null
    }
    reconcile_batch_event = {
      description     = "Brings a run in line with its Batch job on every Batch state-change notification."
      max_instances   = var.function_max_instances.reconcile_batch_event
      concurrency     = 1
      timeout_seconds = 120
      ingress         = "ALLOW_INTERNAL_ONLY"
      event_trigger = {
        event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
        service_account_email = google_service_account.eventarc.email
        pubsub_topic          = google_pubsub_topic.batch_notifications.id
        event_filters         = {}
      }
      invoker_members = { eventarc = local.members.eventarc }
      dead_letter     = local.dead_letter
    }
    sweep_stale_runs = {
      description     = "Every 10 minutes: reconciles runs stuck in submitted or running with Batch."
      max_instances   = var.function_max_instances.sweep_stale_runs
      concurrency     = 1
      timeout_seconds = 540
      ingress         = "ALLOW_INTERNAL_ONLY"
      event_trigger = {
        event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
        service_account_email = google_service_account.eventarc.email
        pubsub_topic          = google_pubsub_topic.sweep.id
        event_filters         = {}
      }
      invoker_members = { eventarc = local.members.eventarc }
      dead_letter     = local.dead_letter
    }
  }
}

module "functions" {
  for_each = local.functions
  source   = "./modules/function"

  project_id            = var.project_id
  region                = var.region
  name                  = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  description           = each.value.description
  entry_point           = each.key
  service_account_email = google_service_account.functions[each.key].email
  source_bucket         = local.function_defaults.source_bucket
  source_object         = local.function_defaults.source_object
  build_service_account = local.function_defaults.build_service_account
  docker_repository     = local.function_defaults.docker_repository
  vpc_connector         = local.function_defaults.vpc_connector
  environment           = local.function_environment
  max_instances         = each.value.max_instances
  concurrency           = each.value.concurrency
  timeout_seconds       = each.value.timeout_seconds
  ingress               = each.value.ingress
  event_trigger         = each.value.event_trigger
  invoker_members       = each.value.invoker_members
  dead_letter           = each.value.dead_letter

  # Eventarc checks the trigger identity's eventReceiver role and, for storage triggers, that the
  # GCS service agent can publish, when it creates a trigger
  # (https://cloud.google.com/eventarc/docs/roles-permissions).
  depends_on = [google_project_iam_member.project_roles]
}

# The four calls were separate modules before: keep their state.
moved {
  from = module.submit_bundle
  to   = module.functions["submit_bundle"]
}

moved {
  from = module.runs_api
  to   = module.functions["runs_api"]
}

moved {
  from = module.reconcile_batch_event
  to   = module.functions["reconcile_batch_event"]
}

moved {
  from = module.sweep_stale_runs
  to   = module.functions["sweep_stale_runs"]
}
