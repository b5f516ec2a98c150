//! Compiles `proto/` with prost and a vendored protoc, so no system protoc is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // JSON is the readable encoding of the same messages: serde on every generated type,
    // camelCase like the proto3 JSON mapping, enums as their proto names (see contracts.rs).
    config.type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]");
    config.type_attribute(".", "#[serde(rename_all = \"camelCase\")]");
    config.message_attribute(".", "#[serde(default)]");
    for (field, module) in [
        ("orderflow.v1.PaymentProcessed.status", "payment_status"),
        ("orderflow.v1.OrderCancelled.reason", "cancel_reason"),
        ("orderflow.v1.StockRejected.reason", "reject_reason"),
        ("orderflow.v1.NotificationSent.kind", "notification_kind"),
    ] {
        config.field_attribute(
            field,
            format!("#[serde(with = \"crate::contracts::enum_json::{module}\")]"),
        );
    }
    // The retired clear-text token is read from old messages but never written again, not
    // even as an empty JSON field.
    config.field_attribute(
        "orderflow.v1.OrderCreated.payment_token",
        "#[serde(skip_serializing_if = \"String::is_empty\")]",
    );
    config.compile_protos(&["proto/orderflow/v1/events.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
