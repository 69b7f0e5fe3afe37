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
