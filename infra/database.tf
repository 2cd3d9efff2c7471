# Cloud SQL for PostgreSQL 16: private IP only, IAM database authentication, no passwords in Terraform.
#
# Connection budget (defaults; the plan fails if the variables break it):
#
#   max_connections (flag)                                     100
#   - reserved: Cloud SQL superuser slots, operators, migrations  10
#   - orchestrator hooks (one short connection each)              20
#   = left for the functions                                      70
#
#   per function instance: db_pool_size + db_max_overflow = 2 + 2 = 4 connections at most
#   max instances: submit_bundle 5 + runs_api 5 + reconcile_batch_event 5 + sweep_stale_runs 1 = 16
#   16 instances x 4 = 64 <= 70
#
# Raising a function's max instances or the pool means raising max_connections (and probably the tier:
# PostgreSQL spends memory per connection) in the same change.
locals {
  db_connections_per_instance = var.db_pool_size + var.db_max_overflow
  db_function_instances       = sum(values(var.function_max_instances))
  db_connections_needed = (
    local.db_function_instances * local.db_connections_per_instance
    + var.orchestrator_db_connections
    + var.db_reserved_connections
  )
}

resource "google_sql_database_instance" "arc" {
  name                = "${var.name_prefix}-db"
  region              = var.region
  database_version    = "POSTGRES_16"
  deletion_protection = true

  settings {
    # PostgreSQL 16 defaults to Enterprise Plus, which only takes db-perf-optimized tiers.
    edition                     = "ENTERPRISE"
    tier                        = var.db_tier
    availability_type           = var.db_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.db_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = true
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.arc.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    database_flags {
      name  = "max_connections"
      value = tostring(var.db_max_connections)
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "03:00"
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = 14
      }
    }

    maintenance_window {
      day          = 7
      hour         = 4
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  lifecycle {
    precondition {
      condition     = local.db_connections_needed <= var.db_max_connections
      error_message = "Connection budget exceeded: sum(function_max_instances) x (db_pool_size + db_max_overflow) + orchestrator_db_connections + db_reserved_connections must be <= db_max_connections. See database.tf."
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "arc" {
  name     = var.db_name
  instance = google_sql_database_instance.arc.name
}

# One IAM database user per service account that talks to the database. Cloud SQL names a service
# account's user after its e-mail without ".gserviceaccount.com" (the functions' ARC_DB_IAM_USER).
# Table privileges are granted in SQL, not here: see "Database roles" in docs/deploy.md.
resource "google_sql_user" "service_accounts" {
  for_each = local.db_service_accounts

  instance = google_sql_database_instance.arc.name
  name     = trimsuffix(each.value, ".gserviceaccount.com")
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# People who run migrations. Their tables outlive them: abandon the user instead of failing the
# destroy on "role owns objects".
resource "google_sql_user" "operators" {
  for_each = toset(var.db_operators)

  instance        = google_sql_database_instance.arc.name
  name            = each.value
  type            = "CLOUD_IAM_USER"
  deletion_policy = "ABANDON"
}
