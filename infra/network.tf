# The network Batch VMs run in and the functions reach Cloud SQL through.
#
# Batch VMs have no external IP (ARC_NO_EXTERNAL_IP=true): Private Google Access covers Google APIs
# (Cloud Storage, Batch, Logging, Artifact Registry) and Cloud NAT covers the rest (container registries
# such as quay.io, pipeline sources on GitHub). No ingress firewall rule exists for them: they need none.

resource "google_compute_network" "arc" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "batch" {
  name                     = "${var.name_prefix}-batch"
  region                   = var.region
  network                  = google_compute_network.arc.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

resource "google_compute_router" "arc" {
  name    = "${var.name_prefix}-router"
  region  = var.region
  network = google_compute_network.arc.id
}

resource "google_compute_router_nat" "arc" {
  name                               = "${var.name_prefix}-nat"
  region                             = var.region
  router                             = google_compute_router.arc.name
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = google_compute_subnetwork.batch.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# SSH through Identity-Aware Proxy to VMs tagged "<prefix>-ops" only: the short-lived VM an operator
# creates to run migrations against the private-IP-only database (docs/deploy.md). No VM carries the
# tag unless someone creates one.
resource "google_compute_firewall" "iap_ssh_ops" {
  name          = "${var.name_prefix}-allow-iap-ssh-ops"
  network       = google_compute_network.arc.id
  direction     = "INGRESS"
  source_ranges = ["35.235.240.0/20"]
  target_tags   = ["${var.name_prefix}-ops"]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

# Private services access: Cloud SQL gets a private IP from this range, peered into the VPC.
resource "google_compute_global_address" "private_services" {
  name          = "${var.name_prefix}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_services_prefix_length
  network       = google_compute_network.arc.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.arc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
  # Removing the peering fails while the producer side still holds the (deleting) SQL instance;
  # abandoning it lets `terraform destroy` finish, and the network deletion removes it anyway.
  deletion_policy = "ABANDON"
}

# How functions reach the database's private IP: a Serverless VPC Access connector, not Direct VPC
# egress. Direct VPC egress is not available to google_cloudfunctions2_function in the 6.x provider
# (only in 7.x, and in preview), and the connector is GA. Egress is PRIVATE_RANGES_ONLY, so only
# traffic to RFC 1918 addresses (Cloud SQL) goes through it; Google APIs stay on the direct path.
resource "google_vpc_access_connector" "functions" {
  name          = "${var.name_prefix}-conn"
  region        = var.region
  network       = google_compute_network.arc.name
  ip_cidr_range = var.connector_cidr
  machine_type  = "e2-micro"
  min_instances = 2
  max_instances = 3
}
