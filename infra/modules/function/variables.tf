variable "project_id" {
  type        = string
  description = "Project the function and its service account live in."
}

variable "region" {
  type        = string
  description = "Region of the function and of its event trigger."
}

variable "name" {
  type        = string
  description = "Function name (also the name of its Cloud Run service)."
}

variable "description" {
  type        = string
  description = "What the function does, shown in the console."
}

variable "entry_point" {
  type        = string
  description = "Python function in functions/main.py the function runs."
}

variable "service_account_email" {
  type        = string
  description = "E-mail of the function's own runtime service account (one per function, never the default compute one)."
}

variable "source_bucket" {
  type        = string
  description = "Bucket holding the zipped functions/ folder."
}

variable "source_object" {
  type        = string
  description = "Object name of the zipped functions/ folder; it carries the archive hash, so a new name means a new build."
}

variable "build_service_account" {
  type        = string
  description = "Service account Cloud Build runs as, projects/<p>/serviceAccounts/<email> (never the default compute one)."
}

variable "docker_repository" {
  type        = string
  description = "Artifact Registry repository the build writes the function image to, projects/<p>/locations/<r>/repositories/<id>."
}

variable "environment" {
  type        = map(string)
  description = "ARC_* environment shared by all functions; ARC_DB_IAM_USER is added here from the function's own service account."
}

variable "max_instances" {
  type        = number
  description = "Most instances at once; sized to the Cloud SQL connection budget (database.tf)."
}

variable "concurrency" {
  type        = number
  description = "Requests one instance serves at once."
  default     = 1
}

variable "cpu" {
  type        = string
  description = "vCPUs per instance (at least 1 when concurrency > 1)."
  default     = "1"
}

variable "memory" {
  type        = string
  description = "Memory per instance, e.g. 512Mi."
  default     = "512Mi"
}

variable "timeout_seconds" {
  type        = number
  description = "Request timeout (at most 540 for event functions, 3600 for HTTP)."
  default     = 300
}

variable "ingress" {
  type        = string
  description = "ALLOW_INTERNAL_ONLY for event functions (Eventarc is internal traffic), ALLOW_ALL for an IAM-protected HTTP API."
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.ingress)
    error_message = "ingress must be ALLOW_ALL, ALLOW_INTERNAL_ONLY or ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "vpc_connector" {
  type        = string
  description = "Serverless VPC Access connector id used to reach Cloud SQL's private IP."
}

variable "event_trigger" {
  type = object({
    event_type            = string
    service_account_email = string
    pubsub_topic          = optional(string)
    event_filters         = optional(map(string), {})
  })
  description = "Eventarc trigger, or null for an HTTP function. Retries are always on (RETRY_POLICY_RETRY): the functions raise on transient failures to get a redelivery."
  default     = null
}

variable "invoker_members" {
  type        = map(string)
  description = "Members granted roles/run.invoker on this function, keyed by a name known at plan time."
  default     = {}
}

variable "dead_letter" {
  type = object({
    topic                 = string
    max_delivery_attempts = number
    pubsub_service_agent  = string
  })
  description = "Dead-letter policy to attach with gcloud to the trigger's Eventarc-managed subscription; null to skip."
  default     = null
}
