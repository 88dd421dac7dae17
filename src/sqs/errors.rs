//! What an SQS failure means for the records involved. SQS reports failures at two levels:
//! a whole request fails (throttling, a missing queue, bad credentials), or the request
//! succeeds and some entries are listed in `Failed[]`. A generic client retries neither of the
//! second kind; this bridge retries what a retry can help.

/// How a failure is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// Try again soon: throttling, server errors, timeouts, broken connections.
    Transient,
    /// This record can never be sent as it is: invalid content, too large.
    Record,
    /// The queue refuses us as a whole (access denied, no such queue, bad token, KMS key
    /// unusable): try again with a long backoff and make noise, never drop the records.
    Destination,
    /// The request as built was refused (too long, bad entry ids): resend one entry per request.
    Request,
}

impl FailureClass {
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Record => "record",
            Self::Destination => "destination",
            Self::Request => "request",
        }
    }
}

/// Codes that mean "slow down" whatever level they come at.
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "RequestThrottled"
            | "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "KmsThrottled"
            | "KMS.ThrottlingException"
    )
}

/// Codes that mean the queue, the credentials or the KMS key are unusable for every record.
fn is_destination_failure(code: &str) -> bool {
    matches!(
        code,
        "AccessDenied"
            | "AccessDeniedException"
            | "QueueDoesNotExist"
            | "AWS.SimpleQueueService.NonExistentQueue"
            | "InvalidAddress"
            | "InvalidSecurity"
            | "InvalidClientTokenId"
            | "UnrecognizedClientException"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "MissingAuthenticationToken"
            | "IncompleteSignature"
            | "OptInRequired"
            | "UnsupportedOperation"
            | "AWS.SimpleQueueService.UnsupportedOperation"
            | "RequestExpired"
    ) || code.starts_with("Kms")
        || code.starts_with("KMS.")
}

/// Codes that mean this request's shape was wrong, not its records.
fn is_request_failure(code: &str) -> bool {
    matches!(
        code,
        "BatchRequestTooLong"
            | "AWS.SimpleQueueService.BatchRequestTooLong"
            | "BatchEntryIdsNotDistinct"
            | "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
            | "TooManyEntriesInBatchRequest"
            | "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
            | "InvalidBatchEntryId"
            | "AWS.SimpleQueueService.InvalidBatchEntryId"
            | "EmptyBatchRequest"
            | "AWS.SimpleQueueService.EmptyBatchRequest"
    )
}

/// A whole request failed with this code and HTTP status.
pub fn classify_request_error(code: Option<&str>, status: Option<u16>) -> FailureClass {
    let code = code.unwrap_or_default();
    if is_throttling(code) {
        return FailureClass::Transient;
    }
    if is_destination_failure(code) {
        return FailureClass::Destination;
    }
    if is_request_failure(code) {
        return FailureClass::Request;
    }
    match status {
        Some(500..=599) | Some(408) | Some(429) | None => FailureClass::Transient,
        Some(403) | Some(401) | Some(404) => FailureClass::Destination,
        // A 400 with a code we do not know could be about any record of the request: resend
        // them one by one, so that a bad record is told from a bad request.
        Some(400) => FailureClass::Request,
        // Unknown answers are never taken as a reason to drop records.
        Some(_) => FailureClass::Destination,
    }
}

/// One entry of a `Failed[]` list.
pub fn classify_entry_error(code: &str, sender_fault: bool) -> FailureClass {
    if is_throttling(code) {
        FailureClass::Transient
    } else if is_destination_failure(code) {
        FailureClass::Destination
    } else if sender_fault {
        FailureClass::Record
    } else {
        // SQS's own fault, such as InternalError or ServiceUnavailable.
        FailureClass::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_request_failures() {
        use FailureClass::*;
        let cases = [
            (Some("RequestThrottled"), Some(400), Transient),
            (Some("ThrottlingException"), Some(400), Transient),
            (Some("KmsThrottled"), Some(400), Transient),
            (Some("InternalFailure"), Some(500), Transient),
            (None, Some(503), Transient),
            (None, None, Transient),
            (Some("AccessDenied"), Some(403), Destination),
            (
                Some("AWS.SimpleQueueService.NonExistentQueue"),
                Some(400),
                Destination,
            ),
            (Some("QueueDoesNotExist"), Some(400), Destination),
            (Some("InvalidClientTokenId"), Some(403), Destination),
            (Some("KmsAccessDenied"), Some(400), Destination),
            (Some("BatchRequestTooLong"), Some(400), Request),
            (Some("SomethingNew"), Some(400), Request),
            (Some("SomethingNew"), Some(409), Destination),
        ];
        for (code, status, expected) in cases {
            assert_eq!(
                classify_request_error(code, status),
                expected,
                "{code:?} {status:?}"
            );
        }
    }

    #[test]
    fn entry_failures() {
        use FailureClass::*;
        assert_eq!(classify_entry_error("InvalidMessageContents", true), Record);
        assert_eq!(classify_entry_error("InvalidParameterValue", true), Record);
        assert_eq!(classify_entry_error("InternalError", false), Transient);
        assert_eq!(classify_entry_error("ThrottlingException", true), Transient);
        assert_eq!(classify_entry_error("KmsAccessDenied", true), Destination);
        assert_eq!(classify_entry_error("AccessDenied", true), Destination);
    }
}
