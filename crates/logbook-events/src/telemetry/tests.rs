use super::*;

#[test]
fn config_reads_protocol_and_durations() {
    let config: TelemetryConfig = toml::from_str(
        "enabled = true\nendpoint = \"http://collector:4318\"\nprotocol = \"http\"\nexport_timeout = \"3s\"",
    )
    .unwrap();
    assert_eq!(config.protocol, Protocol::Http);
    assert_eq!(config.export_timeout, Duration::from_secs(3));
    assert_eq!(config.service_name, "logbook");
    assert!(toml::from_str::<TelemetryConfig>("protocol = \"udp\"").is_err());
}

#[test]
fn exporter_transport_is_not_exported() {
    for target in [
        "tonic::transport",
        "h2",
        "hyper_util::client",
        "opentelemetry_sdk",
    ] {
        assert!(is_transport(target), "{target}");
    }
    for target in ["logbook::serve", "hyperion", "service"] {
        assert!(!is_transport(target), "{target}");
    }
}
