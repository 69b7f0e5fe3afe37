//! The OpenAPI document of the API, generated from the handlers and types.

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::routes::{AcceptedOrder, AcceptedUser};
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
    paths(crate::routes::create_order, crate::routes::create_user),
    components(schemas(
        CreateOrderRequest,
        CustomerInput,
        AddressInput,
        ItemInput,
        CreateUserRequest,
        AcceptedOrder,
        AcceptedUser,
        ErrorBody,
        FieldError
    ))
)]
pub struct ApiDoc;
