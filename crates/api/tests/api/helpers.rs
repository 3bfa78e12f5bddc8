//! In-process app over core's in-memory fakes, with typed request helpers.

use std::rc::Rc;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::test::{self as atest, TestRequest};
use futures::future::LocalBoxFuture;
use provisioner_api::{
    ApiApp, ApiState, AuthConfig, Claims, HttpSettings, JwtVerifier, mint_hs256,
};
use provisioner_core::testing::{TestService, service};
use secrecy::SecretString;
use serde_json::{Value, json};

/// The HS256 secret of test apps.
pub const SECRET: &str = "test-secret-that-is-long-enough-0123456789";

/// A finished response.
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    }
    /// Asserts a problem body with `status` and `code`; returns the body.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json")
        );
        let b = self.json();
        assert_eq!(b["code"], code, "body: {b}");
        assert_eq!(b["status"], status);
        assert!(b["title"].is_string() && b["detail"].is_string() && b["type"].is_string());
        assert_eq!(
            b["request_id"].as_str(),
            self.header("x-request-id").as_deref(),
            "problem carries the request id"
        );
        b
    }
}

type Caller = Box<dyn Fn(TestRequest) -> LocalBoxFuture<'static, Resp>>;

/// The app under test and its fakes.
pub struct TestApp {
    call: Caller,
    pub core: TestService,
}

pub fn settings() -> HttpSettings {
    HttpSettings {
        caller_rate_limit_per_sec: 0,
        ..HttpSettings::default()
    }
}

pub fn hs_config() -> AuthConfig {
    AuthConfig {
        hs256_secret: Some(SecretString::from(SECRET)),
        ..AuthConfig::default()
    }
}

pub async fn spawn() -> TestApp {
    spawn_with(hs_config(), settings()).await
}

pub async fn spawn_with(auth: AuthConfig, settings: HttpSettings) -> TestApp {
    let core = service();
    let verifier = Arc::new(JwtVerifier::new(&auth).expect("verifier"));
    let state = ApiState {
        service: core.service.clone(),
        verifier,
    };
    let app = Rc::new(atest::init_service(ApiApp::new(state, &settings).build()).await);
    let call: Caller = Box::new(move |req: TestRequest| {
        let app = app.clone();
        Box::pin(async move {
            let res = atest::call_service(&*app, req.to_request()).await;
            let status = res.status();
            let headers = res.headers().clone();
            let body = atest::read_body(res).await.to_vec();
            Resp {
                status,
                headers,
                body,
            }
        })
    });
    TestApp { call, core }
}

pub fn claims(scope: &str, tenant: Option<&str>) -> Claims {
    Claims {
        sub: format!("tester-{}", scope.replace(' ', "+")),
        exp: chrono::Utc::now().timestamp() + 3600,
        scope: scope.to_owned(),
        scp: String::new(),
        tenant: tenant.map(str::to_owned),
        iss: None,
        aud: None,
        iat: None,
    }
}

pub fn token(scope: &str, tenant: Option<&str>) -> String {
    mint_hs256(&SecretString::from(SECRET), &claims(scope, tenant)).expect("mint")
}

pub fn admin() -> String {
    token("provisioner:admin", None)
}

pub fn tenant_body(id: &str) -> Value {
    json!({
        "id": id,
        "display_name": format!("{id} corp"),
        "upstream": {"base_url": "https://api.example.test", "user_id": format!("{id}-ml"), "pat": "pat-super-secret-0001"},
        "allowed_scopes": ["Predict", "Inputs:Get", "Inputs:Add", "Concepts:Get"],
        "default_scope_profile": "standard",
        "scope_profiles": {"standard": ["Predict", "Inputs:Get"], "annotator": ["Inputs:Add", "Inputs:Get"]}
    })
}

impl TestApp {
    pub async fn send(&self, req: TestRequest) -> Resp {
        (self.call)(req).await
    }

    /// A request with a bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = TestRequest::default()
            .method(method.parse().expect("method"))
            .uri(path);
        if let Some(t) = token {
            req = req.insert_header(("authorization", format!("Bearer {t}")));
        }
        if let Some(b) = body {
            req = req.set_json(b);
        }
        self.send(req).await
    }

    /// Creates a tenant as admin.
    pub async fn tenant(&self, id: &str) -> Value {
        let r = self
            .call("POST", "/v1/tenants", Some(&admin()), Some(tenant_body(id)))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }

    /// Provisions a user as admin.
    pub async fn user(&self, tenant: &str, ext: &str) -> Value {
        let r = self
            .call(
                "PUT",
                &format!("/v1/tenants/{tenant}/users/{ext}"),
                Some(&admin()),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()
    }
}
