# Buckets. Layout of the runs bucket (functions/arc_reactor/core/layout.py):
#
#   gs://<runs>/runs/<run_id>/{inputs,results,logs}/   permanent
#   gs://<runs>/work/<lineage_id>/                       engine work dir, each object deleted 30 days after it was written
#   gs://<runs>/cache/<lineage_id>/                      engine resume cache (NXF_CLOUDCACHE_PATH), permanent
#
# Why work/ is a top-level prefix and not runs/<run_id>/work/: a lifecycle condition matches object
# names by literal prefix (matchesPrefix) or suffix only; it cannot say runs/*/work/. With the work dir
# under its own prefix, one rule (matchesPrefix ["work/"], age 30) deletes exactly the work files and
# cannot touch inputs, results, logs or the cache. The 30 days is also what the recover service assumes
# when it checks that a parent's work dir still exists, so it is not a variable.

resource "google_storage_bucket" "inbox" {
  name                        = local.inbox_bucket
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = false
  }

  # Optional retention of old submissions; the system itself never deletes anything in the inbox.
  dynamic "lifecycle_rule" {
    for_each = var.inbox_retention_days > 0 ? [var.inbox_retention_days] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "runs" {
  name                        = local.runs_bucket
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Off on purpose: with versioning, the work/ deletions below would only make noncurrent copies.
  versioning {
    enabled = false
  }

  soft_delete_policy {
    retention_duration_seconds = var.runs_soft_delete_retention_seconds
  }

  # The only Delete rule on this bucket. Scoped to work/ (see the comment at the top of this file).
  lifecycle_rule {
    condition {
      age            = 30
      matches_prefix = ["work/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

# Zipped functions/ folder. Terraform replaces the object when the code changes because its name
# carries the archive's hash, and the new name makes the functions rebuild and redeploy.
# The build account needs no access to it: Cloud Functions copies the object to its own
# gcf-v2-sources-PROJECT_NUMBER-REGION bucket and the build reads that copy
# (https://cloud.google.com/functions/docs/building; the build's grant is in iam.tf).
resource "google_storage_bucket" "functions_source" {
  name                        = "${var.project_id}-${var.name_prefix}-functions-src"
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  depends_on = [google_project_service.apis]
}

data "archive_file" "functions" {
  type        = "zip"
  source_dir  = "${path.module}/../functions"
  output_path = "${path.module}/.build/functions.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc", "**/.pytest_cache/**", "**/.mypy_cache/**"]
}

resource "google_storage_bucket_object" "functions_source" {
  name   = "functions-${data.archive_file.functions.output_sha256}.zip"
  bucket = google_storage_bucket.functions_source.name
  source = data.archive_file.functions.output_path
}

# The demo bundle's input files (examples/data), so that the first run of docs/deploy.md works as written:
# its samplesheet names gs://arc-demo-data/..., a bucket of the local stack only; the doc points it here.
# Nothing but these small files lives in it, so it may be destroyed with its objects.
resource "google_storage_bucket" "demo_data" {
  count = var.demo_data ? 1 : 0

  name                        = local.demo_data_bucket
  location                    = upper(var.region)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "demo_data" {
  for_each = var.demo_data ? fileset("${path.module}/../examples/data", "*.fastq.gz") : toset([])

  bucket = google_storage_bucket.demo_data[0].name
  name   = "fastq/${each.value}"
  source = "${path.module}/../examples/data/${each.value}"
}
