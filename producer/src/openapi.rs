//! The OpenAPI document of the API, generated from the handlers and types.

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::intake::{AcceptedChange, BatchAnswer, BatchStatus, ItemOutcome, ItemStatus};
use crate::routes::{AcceptedOrder, AcceptedUser};
use contract::batch::{OrderBatch, OrderBatchItem, UserBatch, UserBatchItem};
use contract::request::{
    AddressInput, CancellationRequest, CreateOrderRequest, CreateUserRequest, CustomerInput,
    DeliveryRequest, ItemInput, PaymentRequest, ShipmentRequest,
};
use contract::FieldError;

/// Served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "PubSubKafka producer",
        description = "Order and user intake, and the changes of an order's life (payment, \
                       shipment, delivery, cancellation): each accepted request is an ECST \
                       event on Kafka"
    ),
    paths(
        crate::routes::create_order,
        crate::routes::create_user,
        crate::routes::create_orders,
        crate::routes::create_users,
        crate::routes::pay_order,
        crate::routes::ship_order,
        crate::routes::deliver_order,
        crate::routes::cancel_order
    ),
    components(schemas(
        CreateOrderRequest,
        CustomerInput,
        AddressInput,
        ItemInput,
        CreateUserRequest,
        AcceptedOrder,
        AcceptedUser,
        PaymentRequest,
        ShipmentRequest,
        DeliveryRequest,
        CancellationRequest,
        AcceptedChange,
        OrderBatch,
        OrderBatchItem,
        UserBatch,
        UserBatchItem,
        BatchAnswer,
        BatchStatus,
        ItemOutcome,
        ItemStatus,
        ErrorBody,
        FieldError
    ))
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch statuses are documented as the closed sets they are, in
    /// the words the answers use.
    #[test]
    fn batch_statuses_are_documented_with_their_values() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serialised");
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ItemStatus"]["enum"],
            serde_json::json!(["accepted", "failed"])
        );
        assert_eq!(
            schemas["BatchStatus"]["enum"],
            serde_json::json!(["accepted", "partial"])
        );
        assert_eq!(
            schemas["ItemOutcome"]["properties"]["status"]["$ref"],
            "#/components/schemas/ItemStatus"
        );
    }

    /// Each change of an order is documented at its path, with its body,
    /// its event type, the order id as a UUID in the path, `If-Match`, and
    /// the same refusals as creation plus the two of its path and header.
    #[test]
    fn the_changes_of_an_order_are_documented() {
        use contract::lifecycle::{
            CancellationReason, ORDER_CANCELLED, ORDER_DELIVERED, ORDER_PAID, ORDER_SHIPPED,
        };
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serialised");
        for (name, event_type, body) in [
            ("payment", ORDER_PAID, "PaymentRequest"),
            ("shipment", ORDER_SHIPPED, "ShipmentRequest"),
            ("delivery", ORDER_DELIVERED, "DeliveryRequest"),
            ("cancellation", ORDER_CANCELLED, "CancellationRequest"),
        ] {
            let path = format!("/orders/{{id}}/{name}");
            let post = &doc["paths"][&path]["post"];
            assert_eq!(
                post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
                format!("#/components/schemas/{body}"),
                "{path}: {post}"
            );
            assert!(
                post["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("`{event_type}`"))),
                "{path} names its event type: {post}"
            );
            let params = post["parameters"].as_array().expect("parameters");
            let param = |n: &str| params.iter().find(|p| p["name"] == n).cloned();
            let id = param("id").expect("the order id");
            assert_eq!(
                (id["in"].as_str(), id["required"].as_bool()),
                (Some("path"), Some(true))
            );
            assert_eq!(id["schema"]["format"], "uuid");
            for header in ["If-Match", "Idempotency-Key", "X-Correlation-ID"] {
                let p = param(header).unwrap_or_else(|| panic!("{path}: {header}"));
                assert_eq!(p["in"], "header");
            }
            let responses = &post["responses"];
            assert_eq!(
                responses["202"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/AcceptedChange"
            );
            assert!(responses["202"]["headers"]["Location"].is_object());
            for status in ["400", "401", "408", "413", "415", "422", "429", "503"] {
                assert!(responses[status].is_object(), "{path}: {status}");
            }
        }
        let schemas = &doc["components"]["schemas"];
        let reasons: Vec<&str> = CancellationReason::ALL
            .map(CancellationReason::as_str)
            .into();
        assert_eq!(
            schemas["CancellationRequest"]["properties"]["reason"]["enum"],
            serde_json::json!(reasons),
            "the closed set of reasons"
        );
        assert_eq!(
            schemas["PaymentRequest"]["required"],
            serde_json::json!(["reference", "amount", "currency"])
        );
        assert_eq!(
            schemas["PaymentRequest"]["properties"]["amount"]["type"],
            "string"
        );
        assert!(
            schemas["DeliveryRequest"]["required"].is_null(),
            "{{}} is a delivery"
        );
    }
}
