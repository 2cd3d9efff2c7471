# Every input of the deployment. Names of things derive from name_prefix; sizes from the connection
# budget (see locals in database.tf and docs/deploy.md).

variable "project_id" {
  type        = string
  description = "Google Cloud project id to deploy into (an empty project is fine: the APIs are enabled here)."
}

variable "region" {
  type        = string
  description = "Region of the buckets, functions, Batch jobs, Cloud SQL and the network (one region for everything)."
  default     = "us-central1"
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name (service accounts, functions, topics, the database instance)."
  default     = "arc"

  validation {
    # Service account ids are 6-30 characters; the longest suffix used is "-orchestrator" (13).
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-16 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels put on every resource that takes labels (app=arc-reactor is always set)."
  default     = {}
}

# --- Buckets -------------------------------------------------------------------------------------

variable "inbox_bucket_name" {
  type        = string
  description = "Name of the inbox bucket users drop run bundles into; empty means <project_id>-<name_prefix>-inbox."
  default     = ""
}

variable "runs_bucket_name" {
  type        = string
  description = "Name of the bucket holding runs/, work/ and cache/; empty means <project_id>-<name_prefix>-runs."
  default     = ""
}

variable "inbox_retention_days" {
  type        = number
  description = "Opt-in: delete inbox objects (old submissions and their feedback files) after this many days; 0 (default) keeps them forever, as DESIGN.md says the system deletes nothing in the inbox."
  default     = 0

  validation {
    condition     = var.inbox_retention_days >= 0 && floor(var.inbox_retention_days) == var.inbox_retention_days
    error_message = "inbox_retention_days must be a whole number of days, 0 or more."
  }
}

variable "runs_soft_delete_retention_seconds" {
  type        = number
  description = "Soft-delete window of the runs bucket in seconds (0 disables it; 604800 = 7 days, Google's default). Deleted work/ objects are billed for this long."
  default     = 604800

  validation {
    condition     = var.runs_soft_delete_retention_seconds == 0 || (var.runs_soft_delete_retention_seconds >= 604800 && var.runs_soft_delete_retention_seconds <= 7776000)
    error_message = "runs_soft_delete_retention_seconds must be 0 or between 604800 (7 days) and 7776000 (90 days)."
  }
}

# --- Network -------------------------------------------------------------------------------------

variable "subnet_cidr" {
  type        = string
  description = "Primary range of the subnetwork Batch VMs (orchestrators and task VMs) run in."
  default     = "10.10.0.0/20"
}

variable "connector_cidr" {
  type        = string
  description = "Unused /28 range for the Serverless VPC Access connector the functions reach Cloud SQL through."
  default     = "10.8.0.0/28"
}

variable "private_services_prefix_length" {
  type        = number
  description = "Prefix length of the range reserved for private services access (Cloud SQL's private IP comes from it)."
  default     = 20
}

# --- Database ------------------------------------------------------------------------------------

variable "db_tier" {
  type        = string
  description = "Cloud SQL machine tier (Enterprise edition), e.g. db-custom-1-3840 (1 vCPU, 3.75 GB)."
  default     = "db-custom-1-3840"
}

variable "db_availability_type" {
  type        = string
  description = "ZONAL (one zone, cheaper) or REGIONAL (high availability with a standby in another zone)."
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.db_availability_type)
    error_message = "db_availability_type must be ZONAL or REGIONAL."
  }
}

variable "db_disk_size_gb" {
  type        = number
  description = "Initial SSD size of the Cloud SQL instance in GB (it grows automatically)."
  default     = 10
}

variable "db_name" {
  type        = string
  description = "Name of the PostgreSQL database the runs and run_events tables live in (ARC_DB_NAME)."
  default     = "arc"
}

variable "db_max_connections" {
  type        = number
  description = "PostgreSQL max_connections, set as a flag so the connection budget does not depend on the tier's default."
  default     = 100
}

variable "db_reserved_connections" {
  type        = number
  description = "Connections kept out of the functions' budget: Cloud SQL's own superuser slots, operators, migrations."
  default     = 10
}

variable "orchestrator_db_connections" {
  type        = number
  description = "Connections budgeted for orchestrator status hooks (each hook opens one short-lived connection)."
  default     = 20
}

variable "db_pool_size" {
  type        = number
  description = "SQLAlchemy pool size per function instance (ARC_DB_POOL_SIZE)."
  default     = 2
}

variable "db_max_overflow" {
  type        = number
  description = "SQLAlchemy max overflow per function instance (ARC_DB_MAX_OVERFLOW)."
  default     = 2
}

variable "db_operators" {
  type        = list(string)
  description = "E-mail addresses of people who run migrations (arc db upgrade): each gets a Cloud SQL IAM user and the Cloud SQL client roles."
  default     = []
}

# --- Functions -----------------------------------------------------------------------------------

variable "function_max_instances" {
  type = object({
    submit_bundle         = number
    runs_api              = number
    reconcile_batch_event = number
    sweep_stale_runs      = number
  })
  description = "Max instances per function. Their sum times (db_pool_size + db_max_overflow) must fit the connection budget; the plan fails otherwise."
  default = {
    submit_bundle         = 5
    runs_api              = 5
    reconcile_batch_event = 5
    sweep_stale_runs      = 1
  }
}

variable "runs_api_concurrency" {
  type        = number
  description = "Concurrent requests per runs_api instance (SSE streams are long-lived, so more than 1); the DB pool still caps its connections."
  default     = 10
}

variable "api_invoker_members" {
  type        = list(string)
  description = "IAM members allowed to call runs_api, e.g. [\"group:arc-users@example.com\"]. Nobody else can (no allUsers)."
  default     = []

  validation {
    condition     = alltrue([for m in var.api_invoker_members : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "runs_api is IAM-protected: allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "inbox_uploader_members" {
  type        = list(string)
  description = "IAM members who may drop bundles into the inbox and read their feedback, e.g. [\"group:arc-users@example.com\"]."
  default     = []

  validation {
    condition     = alltrue([for m in var.inbox_uploader_members : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "The inbox is private: allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "results_reader_members" {
  type        = list(string)
  description = "IAM members (e.g. [\"group:arc-analysts@example.com\"]) who may read every run's inputs, results and logs directly in the runs bucket (gs://<runs>/runs/...), for tools that read gs:// paths; not the engines' work files. Everyone else gets their own runs' results through GET /runs/{id}/results."
  default     = []

  validation {
    condition     = alltrue([for m in var.results_reader_members : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "Run results are private: allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "admin_group" {
  type        = string
  description = "Google group (or user) e-mails, comma-separated, who may read, cancel and recover every run (ARC_ADMIN_GROUP); group members are looked up when group_lookup is true."

  validation {
    condition     = alltrue([for p in split(",", var.admin_group) : can(regex("^[^@\\s]+@[^@\\s]+$", trimspace(p)))])
    error_message = "admin_group must be e-mail addresses, comma-separated."
  }
}

variable "iap_audiences" {
  type        = string
  description = "With Identity-Aware Proxy in front of runs_api (the dashboard in a browser, docs/dashboard.md): the audiences of IAP's signed header that runs_api accepts, comma-separated (ARC_IAP_AUDIENCES), as IAP's page in the Console shows them (Signed Header JWT Audience), e.g. /projects/PROJECT_NUMBER/global/backendServices/ID behind a load balancer. Empty: IAP's header is ignored."
  default     = ""

  validation {
    condition     = alltrue([for a in compact(split(",", var.iap_audiences)) : can(regex("^/projects/[0-9]+/[^\\s,]+$", trimspace(a)))])
    error_message = "iap_audiences must be IAP audiences (/projects/PROJECT_NUMBER/...), comma-separated."
  }
}

variable "group_lookup" {
  type        = bool
  description = "Look up the members of the groups in admin_group and reader_members with the Cloud Identity Groups API (ARC_GROUP_LOOKUP). runs_api's service account needs the Groups Reader admin role in your Workspace or Cloud Identity account (docs/security.md); false: only listed e-mails match."
  default     = true
}

variable "reader_members" {
  type        = list(string)
  description = "E-mails of users or groups (as named in their ID tokens) who may read every run; others read only their own (ARC_READER_MEMBERS)."
  default     = []
}

variable "max_event_age_seconds" {
  type        = number
  description = "Events older than this are dropped with a warning (ARC_MAX_EVENT_AGE_SECONDS)."
  default     = 86400
}

variable "sweep_schedule" {
  type        = string
  description = "Cron schedule (UTC) of the Cloud Scheduler job that triggers sweep_stale_runs."
  default     = "*/10 * * * *"
}

variable "attach_dead_letter_policy" {
  type        = bool
  description = "After each event function deploys, run gcloud to attach the dead-letter topic to its Eventarc-managed subscription (Terraform cannot express it). Needs gcloud where terraform runs."
  default     = true
}

variable "dead_letter_max_delivery_attempts" {
  type        = number
  description = "Deliveries of an event before Pub/Sub moves it to the dead-letter topic (5-100)."
  default     = 10

  validation {
    condition     = var.dead_letter_max_delivery_attempts >= 5 && var.dead_letter_max_delivery_attempts <= 100
    error_message = "dead_letter_max_delivery_attempts must be between 5 and 100."
  }
}

# --- Orchestrator image --------------------------------------------------------------------------

variable "orchestrator_image" {
  type        = string
  description = "Orchestrator container image (ARC_ORCHESTRATOR_IMAGE); empty means <region>-docker.pkg.dev/<project>/<prefix>-orchestrator/arc-orchestrator:latest (the name scripts/build-orchestrator.sh pushes). Prefer a digest in production."
  default     = ""
}

variable "demo_data" {
  type        = bool
  description = "Create the demo-data bucket with the demo bundle's FASTQ files (examples/data), for the first run of docs/deploy.md."
  default     = true
}

variable "input_buckets" {
  type        = list(string)
  description = "Names of the labs' own buckets that samplesheets may name (gs://<bucket>/...): the functions that validate a submission, the orchestrator and the pipeline tasks get Storage Object Viewer on each."
  default     = []

  validation {
    condition     = alltrue([for b in var.input_buckets : can(regex("^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$", b))])
    error_message = "input_buckets are bucket names (no gs:// and no path)."
  }
}

variable "alert_notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids (projects/<p>/notificationChannels/<id>) the alert policies of monitoring.tf notify; empty: the alerts still open incidents in the console."
  default     = []
}

variable "billing_export_table" {
  type        = string
  description = "The Cloud Billing export table to BigQuery, project.dataset.table (gcp_billing_export_v1_<ACCOUNT> or the detailed _resource_ one), from which runs_api reads each run's billed cost by its run-id label (ARC_BILLING_EXPORT_TABLE, docs/cost.md); empty: runs show only the estimate."
  default     = ""

  validation {
    condition     = var.billing_export_table == "" || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]\\.[A-Za-z0-9_]{1,1024}\\.[A-Za-z0-9_-]{1,1024}$", var.billing_export_table))
    error_message = "billing_export_table must be project.dataset.table, or empty."
  }
}

variable "snakemake_executor" {
  type        = string
  description = "Where Snakemake runs its jobs (ARC_SNAKEMAKE_EXECUTOR, docs/snakemake.md): batch, each job a Batch task job of the orchestrator image with its data in the run's work/ prefix; or local, every job inside the 2-vCPU head VM."
  default     = "batch"

  validation {
    condition     = contains(["batch", "local"], var.snakemake_executor)
    error_message = "snakemake_executor must be batch or local."
  }
}

