//! Amazon Bedrock (`api: "bedrock-converse-stream"`).
//!
//! - [`converse`]: `POST {baseUrl}/model/{modelId}/converse-stream` (the ConverseStream
//!   operation of the Bedrock Runtime API) and model discovery through `ListFoundationModels`.
//! - [`sigv4`]: AWS Signature Version 4, a pure function of request, credentials and time.
//! - [`event_stream`]: the `application/vnd.amazon.eventstream` binary framing of the answer.
//!
//! Requests are signed with the provider's AWS credentials (service `bedrock`) or, without
//! them, carry an Amazon Bedrock API key as `Authorization: Bearer`. Nothing here reads the
//! environment or AWS config files: credentials come resolved in `ProviderSettings`.

pub mod converse;
pub mod event_stream;
pub mod sigv4;

pub use converse::API;
pub(crate) use converse::{call, discover};
