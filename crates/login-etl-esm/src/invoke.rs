//! The Lambda Invoke API over HTTP: `POST {base}/2015-03-31/functions/{name}/invocations`,
//! synchronous (`RequestResponse`), as the event source mapping calls it.
//!
//! `cargo lambda watch` and LocalStack accept unsigned calls; AWS needs SigV4, so requests are
//! signed whenever the SDK's credential chain yields credentials.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

use crate::response::{InvocationFailure, Reply};

/// Signs requests for the `lambda` service in one region.
#[derive(Debug, Clone)]
pub struct Signer {
    pub credentials: SharedCredentialsProvider,
    pub region: String,
}

pub struct Invoker {
    http: reqwest::Client,
    url: String,
    signer: Option<Signer>,
}

impl Invoker {
    pub fn new(
        base_url: &str,
        function_name: &str,
        timeout: Duration,
        signer: Option<Signer>,
    ) -> Result<Invoker, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Invoker {
            http,
            url: invoke_url(base_url, function_name),
            signer,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Invokes the function with `payload` and returns its reply, whatever the status.
    pub async fn invoke(&self, payload: Vec<u8>) -> Result<Reply, InvocationFailure> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-amz-invocation-type", "RequestResponse");
        if let Some(signer) = &self.signer {
            for (name, value) in signature_headers(signer, &self.url, &payload).await {
                request = request.header(name, value);
            }
        }
        let response = request
            .body(payload)
            .send()
            .await
            .map_err(|e| InvocationFailure::Unreachable(describe(e)))?;
        let status = response.status().as_u16();
        let function_error = response
            .headers()
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| InvocationFailure::Unreachable(describe(e)))?;
        Ok(Reply {
            status,
            function_error,
            body: body.to_vec(),
        })
    }
}

/// The Invoke API's path; an ARN's colons are percent-encoded, as the AWS SDKs send them.
pub fn invoke_url(base_url: &str, function_name: &str) -> String {
    format!(
        "{}/2015-03-31/functions/{}/invocations",
        base_url.trim_end_matches('/'),
        function_name.replace(':', "%3A")
    )
}

/// SigV4 headers for the request, or none when no credentials are to be had (local emulators).
async fn signature_headers(signer: &Signer, url: &str, payload: &[u8]) -> Vec<(String, String)> {
    let credentials = match signer.credentials.provide_credentials().await {
        Ok(credentials) => credentials,
        Err(error) => {
            tracing::debug!(%error, "no AWS credentials; invoking unsigned");
            return Vec::new();
        }
    };
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signer.region)
        .name("lambda")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("all signing parameters are set")
        .into();
    let headers = [("content-type", "application/json")];
    let signed = SignableRequest::new(
        "POST",
        url,
        headers.into_iter(),
        SignableBody::Bytes(payload),
    )
    .and_then(|request| sign(request, &params));
    match signed {
        Ok(output) => {
            let (instructions, _signature) = output.into_parts();
            instructions
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        }
        Err(error) => {
            tracing::warn!(%error, "could not sign the invocation; sending it unsigned");
            Vec::new()
        }
    }
}

/// reqwest's error with its causes (e.g. "connection refused"), without the request body.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    #[test]
    fn the_url_is_the_invoke_api_path() {
        assert_eq!(
            invoke_url("http://127.0.0.1:9000/", "login-etl"),
            "http://127.0.0.1:9000/2015-03-31/functions/login-etl/invocations"
        );
        assert_eq!(
            invoke_url(
                "https://lambda.us-east-1.amazonaws.com",
                "arn:aws:lambda:us-east-1:1:function:f"
            ),
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations"
        );
    }

    #[tokio::test]
    async fn requests_are_signed_for_lambda_when_there_are_credentials() {
        let signer = Signer {
            credentials: SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                Some("token".into()),
                None,
                "test",
            )),
            region: "eu-west-1".into(),
        };
        let url = invoke_url("https://lambda.eu-west-1.amazonaws.com", "f");
        let headers = signature_headers(&signer, &url, b"{}").await;
        let authorization = &headers
            .iter()
            .find(|(name, _)| name == "authorization")
            .expect("an authorization header")
            .1;
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{authorization}"
        );
        assert!(authorization.contains("/eu-west-1/lambda/aws4_request"));
        assert!(headers.iter().any(|(name, _)| name == "x-amz-date"));
        assert!(headers
            .iter()
            .any(|(name, value)| name == "x-amz-security-token" && value == "token"));
    }
}
