# Log-based metrics over the functions' structured logs (docs/monitoring.md: every log line has
# jsonPayload.event), and alert policies on those that mean a person must act. Where alerts go is yours:
# alert_notification_channels (e.g. `gcloud beta monitoring channels list`). The other metrics and alerts
# of docs/monitoring.md can be added the same way.
# https://cloud.google.com/logging/docs/logs-based-metrics/counter-metrics
# https://cloud.google.com/monitoring/alerts/using-alerting-api

locals {
  # The four functions' Cloud Run services are named <prefix>-<function>.
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${var.name_prefix}-(submit-bundle|runs-api|reconcile-batch-event|sweep-stale-runs)$\""
  log_metrics = {
    arc_submit_refusals = {
      description = "Submissions Batch refused (quota, permission, bad job): every new run fails until fixed."
      filter      = "jsonPayload.event=\"batch_job_create_failed\""
    }
    arc_jobs_missing = {
      description = "Runs failed because their Batch job was gone (deleted outside Arc Reactor, or a project mix-up)."
      filter      = "jsonPayload.event=\"status_changed\" AND jsonPayload.error_code=\"job_missing\""
    }
    arc_cancel_leftovers = {
      description = "Cancellations that could not stop every Batch job of a run: task VMs may still bill."
      filter      = "jsonPayload.event=\"run_jobs_cancelled\" AND severity>=WARNING"
    }
    arc_sweeps = {
      description = "Sweeper passes: the safety net for lost notifications."
      filter      = "jsonPayload.event=\"sweep_done\""
    }
  }
  # Alert when a metric counts anything in 5 minutes.
  threshold_alerts = {
    arc_submit_refusals  = "Batch refuses new runs: check the Batch quotas of the region and the orchestrator's IAM (logs: jsonPayload.event=\"batch_job_create_failed\")."
    arc_jobs_missing     = "A run's Batch job disappeared. Find it with jsonPayload.error_code=\"job_missing\"; were jobs deleted by hand?"
    arc_cancel_leftovers = "A cancel left Batch jobs running. List them with `gcloud batch jobs list --filter='labels.run-id=<run>'` and delete them."
  }
}

resource "google_logging_metric" "arc" {
  for_each = local.log_metrics

  name        = each.key
  description = each.value.description
  filter      = "${local.function_logs} AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_alert_policy" "arc_threshold" {
  for_each = local.threshold_alerts

  display_name          = "Arc Reactor: ${each.key}"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  documentation {
    content   = each.value
    mime_type = "text/markdown"
  }

  conditions {
    display_name = "${each.key} > 0 in 5 min"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.arc[each.key].name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}

# The sweeper runs every 10 minutes by default (sweep_schedule): 30 minutes without a pass means the safety
# net is down.
resource "google_monitoring_alert_policy" "arc_sweeper_silent" {
  display_name          = "Arc Reactor: sweeper silent"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels

  documentation {
    content   = "No sweeper pass for 30 minutes: lost Batch notifications are no longer made up for. Check the Cloud Scheduler job and the sweep_stale_runs function's logs."
    mime_type = "text/markdown"
  }

  conditions {
    display_name = "arc_sweeps absent for 30 min"
    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.arc["arc_sweeps"].name}\" AND resource.type=\"cloud_run_revision\""
      duration = "1800s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
}
