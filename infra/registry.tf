# Artifact Registry: the orchestrator image, and the images Cloud Build makes of the functions.

resource "google_artifact_registry_repository" "orchestrator" {
  repository_id = "${var.name_prefix}-orchestrator"
  location      = var.region
  format        = "DOCKER"
  description   = "Orchestrator image run by every Batch orchestrator job (scripts/build-orchestrator.sh)."

  # Keep the images runs may still be using; drop old untagged layers.
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }

  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}

# Named in each function's build_config so the build service account writes here and nowhere else
# (instead of the project-wide gcf-artifacts repository Cloud Functions would otherwise create).
resource "google_artifact_registry_repository" "functions" {
  repository_id = "${var.name_prefix}-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Container images Cloud Build makes from functions/ for the Cloud Run functions."

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 5
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}
