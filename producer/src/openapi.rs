//! The OpenAPI document of the API, generated from the handlers and types.

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::intake::{BatchAnswer, BatchStatus, ItemOutcome, ItemStatus};
use crate::routes::{AcceptedOrder, AcceptedUser};
use contract::batch::{OrderBatch, OrderBatchItem, UserBatch, UserBatchItem};
use contract::request::{
    AddressInput, CreateOrderRequest, CreateUserRequest, CustomerInput, ItemInput,
};
use contract::FieldError;

/// Served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "PubSubKafka producer",
        description = "Order and user intake: each accepted request is an ECST event on Kafka"
    ),
    paths(
        crate::routes::create_order,
        crate::routes::create_user,
        crate::routes::create_orders,
        crate::routes::create_users
    ),
    components(schemas(
        CreateOrderRequest,
        CustomerInput,
        AddressInput,
        ItemInput,
        CreateUserRequest,
        AcceptedOrder,
        AcceptedUser,
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
}
