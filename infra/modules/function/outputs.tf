output "name" {
  description = "Function name."
  value       = google_cloudfunctions2_function.this.name
}

output "uri" {
  description = "HTTPS URL of the function's Cloud Run service."
  value       = google_cloudfunctions2_function.this.service_config[0].uri
}

output "trigger" {
  description = "Eventarc trigger resource name, empty for an HTTP function."
  value       = var.event_trigger == null ? "" : google_cloudfunctions2_function.this.event_trigger[0].trigger
}
