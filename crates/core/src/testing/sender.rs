//! A [`WebhookSender`] that records every request and answers from a script.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use secrecy::ExposeSecret;

use super::lock;
use crate::ports::WebhookSender;
use crate::webhooks::{SendResult, WebhookRequest};

/// One request as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// URL.
    pub url: String,
    /// `webhook-id`.
    pub msg_id: String,
    /// `webhook-timestamp`.
    pub timestamp: i64,
    /// Body.
    pub body: String,
    /// The secrets it was signed with (exposed: tests only).
    pub secrets: Vec<String>,
}

/// Answers each request with the next scripted result, or 200 when the script is empty.
#[derive(Default)]
pub struct FakeSender {
    script: Mutex<VecDeque<SendResult>>,
    sent: Mutex<Vec<Sent>>,
    otherwise: Mutex<Option<SendResult>>,
}

impl FakeSender {
    /// Queues results for the next requests.
    pub fn answer(&self, results: impl IntoIterator<Item = SendResult>) {
        lock(&self.script).extend(results);
    }
    /// The answer once the script is empty (200 unless set).
    pub fn otherwise(&self, result: SendResult) {
        *lock(&self.otherwise) = Some(result);
    }
    /// Every request so far.
    pub fn sent(&self) -> Vec<Sent> {
        lock(&self.sent).clone()
    }
    /// A status answer.
    pub fn status(code: u16) -> SendResult {
        SendResult::Status {
            code,
            retry_after: None,
        }
    }
}

#[async_trait]
impl WebhookSender for FakeSender {
    async fn send(&self, r: &WebhookRequest) -> SendResult {
        lock(&self.sent).push(Sent {
            url: r.url.clone(),
            msg_id: r.msg_id.clone(),
            timestamp: r.timestamp,
            body: r.body.clone(),
            secrets: r
                .secrets
                .iter()
                .map(|s| s.expose_secret().to_owned())
                .collect(),
        });
        let next = lock(&self.script).pop_front();
        next.or_else(|| lock(&self.otherwise).clone())
            .unwrap_or(SendResult::Status {
                code: 200,
                retry_after: None,
            })
    }
}
