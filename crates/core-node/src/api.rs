//! The household API: JSON requests on a local ZeroMQ REP/ROUTER socket,
//! one JSON object per message. See `docs/api.md`.

use pb_model::parse::{Rounding, Units, energy_kwh};
use pb_units::Decimal;
use serde::{Deserialize, Serialize};

/// A request from the household's software.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApiRequest {
    /// `{"submit": {"cycle_id": 1, "promises_kwh": [...], "actual_kwh": [...]}}`
    Submit(SubmitRequest),
    /// `{"get_bill": {"cycle_id": 1}}`
    GetBill(CycleRef),
    /// `{"status": {}}`
    Status(StatusRequest),
}

/// Data of one cycle, kWh per slot, each value read exactly as written
/// (a JSON number, or a string holding one).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The cycle.
    pub cycle_id: u64,
    /// Promised energy per slot (positive: consumption, negative: feed-in).
    pub promises_kwh: Vec<Decimal>,
    /// Metered energy per slot.
    pub actual_kwh: Vec<Decimal>,
    /// Refuse values finer than 1 Wh instead of rounding them (default
    /// false: round half away from zero, and count them in the answer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_units: bool,
}

impl ApiRequest {
    /// Decodes a request as received; the error is the answer to send.
    pub fn from_json(bytes: &[u8]) -> Result<ApiRequest, ApiResponse> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ApiResponse::error("bad_request", format!("invalid request: not UTF-8 ({e})"))
        })?;
        serde_json::from_str(text).map_err(|e| {
            ApiResponse::error(
                "bad_request",
                pb_inputs::json_error("invalid request", text, &e),
            )
        })
    }
}

impl SubmitRequest {
    /// The household's data in checked units, for a cycle of `slots`
    /// slots, and how many values were rounded to the unit; errors name
    /// the field and index at fault.
    pub fn to_data(
        &self,
        member: &pb_units::MemberId,
        slots: usize,
    ) -> Result<(pb_model::Data, Rounding), String> {
        let units = if self.strict_units {
            Units::Strict
        } else {
            Units::Round
        };
        let mut rounding = Rounding::default();
        let promises = energy_kwh(
            "promises_kwh",
            &self.promises_kwh,
            slots,
            units,
            &mut rounding,
        )?;
        let actual = energy_kwh("actual_kwh", &self.actual_kwh, slots, units, &mut rounding)?;
        let data = pb_model::Data::new(
            member.clone(),
            pb_units::CycleId(self.cycle_id),
            promises,
            actual,
        )
        .map_err(|e| e.to_string())?;
        Ok((data, rounding))
    }
}

/// A cycle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CycleRef {
    /// The cycle.
    pub cycle_id: u64,
}

/// No arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {}

/// The core's answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiResponse {
    /// The data is stored at the core (durably) and will reach the edge.
    Accepted(Accepted),
    /// The decrypted bill.
    Bill(BillReply),
    /// No bill yet.
    Pending(CycleReport),
    /// The core's state.
    Status(StatusReply),
    /// Refused; nothing changed.
    Error(ApiError),
}

/// Answer to `submit`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Accepted {
    /// The cycle.
    pub cycle_id: u64,
    /// Number of slots.
    pub slots: usize,
    /// Where the cycle stands (see [`CycleReport::state`]).
    pub state: String,
    /// How many values were finer than 1 Wh and rounded (half away from
    /// zero).
    #[serde(default)]
    pub rounded: usize,
}

/// A bill, amounts as exact decimal strings in the community's currency.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct BillReply {
    /// The cycle.
    pub cycle_id: u64,
    /// What the household pays.
    pub bill: String,
    /// What the household is paid.
    pub reward: String,
    /// `bill - reward`.
    pub total: String,
}

/// One cycle at this core.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CycleReport {
    /// The cycle.
    pub cycle_id: u64,
    /// `queued` (stored, not yet accepted by the edge), `submitted`
    /// (accepted, waiting for the other members), `correcting` (members
    /// dropped out; this core's correction was accepted), `billed`, or
    /// `failed: <reason>`.
    pub state: String,
    /// Bytes sent to the edge for this cycle's data.
    pub upload_bytes: u64,
    /// Bytes of the bill received from the edge.
    pub download_bytes: u64,
    /// Time spent masking and encrypting, microseconds.
    pub hide_micros: u64,
    /// Time spent decrypting the bill, microseconds.
    pub decrypt_micros: u64,
}

/// Answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct StatusReply {
    /// The household's member id.
    pub member: String,
    /// This core's node id.
    pub node: String,
    /// The edge endpoint.
    pub edge: String,
    /// Whether the edge has accepted this core as a member.
    pub joined: bool,
    /// Cycles with data at this core.
    pub cycles: Vec<CycleReport>,
    /// Members in the community's current member list, when the core
    /// knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_size: Option<usize>,
    /// Fingerprint of that member list (hex), for households to compare
    /// with each other's and the operator's, when the core knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster_fingerprint: Option<String>,
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApiError {
    /// `bad_request`, `unknown_cycle`, `not_member`, `conflict`,
    /// `edge_unavailable`, `internal`.
    pub code: String,
    /// What went wrong, naming the field where there is one.
    pub message: String,
}

impl ApiResponse {
    /// An error answer.
    pub fn error(code: &str, message: impl Into<String>) -> ApiResponse {
        ApiResponse::Error(ApiError {
            code: code.into(),
            message: message.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_the_documented_json() {
        let r: ApiRequest = serde_json::from_str(
            r#"{"submit": {"cycle_id": 3, "promises_kwh": [0.5, -1], "actual_kwh": [0.4, -1.2]}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            ApiRequest::Submit(SubmitRequest {
                cycle_id: 3,
                promises_kwh: vec!["0.5".parse().unwrap(), "-1".parse().unwrap()],
                actual_kwh: vec!["0.4".parse().unwrap(), "-1.2".parse().unwrap()],
                strict_units: false,
            })
        );
        let r: ApiRequest = serde_json::from_str(r#"{"get_bill": {"cycle_id": 3}}"#).unwrap();
        assert_eq!(r, ApiRequest::GetBill(CycleRef { cycle_id: 3 }));
        let r: ApiRequest = serde_json::from_str(r#"{"status": {}}"#).unwrap();
        assert_eq!(r, ApiRequest::Status(StatusRequest {}));
        for bad in [
            r#"{"submit": {"cycle_id": -1, "promises_kwh": [], "actual_kwh": []}}"#,
            r#"{"get_bill": {"cycle_id": 3, "extra": 1}}"#,
            r#"{"status": {}, "get_bill": {"cycle_id": 3}}"#,
            r#"{"delete": {}}"#,
            r#"[1,2]"#,
        ] {
            assert!(serde_json::from_str::<ApiRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_read_as_written_and_bad_ones_named() {
        let r = ApiRequest::from_json(
            br#"{"submit": {"cycle_id": 3, "promises_kwh": [0.5005, "0.0004"], "actual_kwh": [1, 2]}}"#,
        )
        .unwrap();
        let ApiRequest::Submit(s) = r else {
            panic!("not a submit")
        };
        let member = pb_units::MemberId::new("h").unwrap();
        let (data, rounding) = s.to_data(&member, 2).unwrap();
        assert_eq!(data.promises()[0], pb_units::Wh(501));
        assert_eq!(rounding.count, 2);
        let strict = SubmitRequest {
            strict_units: true,
            ..s
        };
        assert!(
            strict
                .to_data(&member, 2)
                .unwrap_err()
                .contains("finer than the unit")
        );
        let ApiResponse::Error(e) = ApiRequest::from_json(
            br#"{"submit": {"cycle_id": 3, "promises_kwh": [NaN], "actual_kwh": [1]}}"#,
        )
        .unwrap_err() else {
            panic!("not an error")
        };
        assert!(e.message.contains("NaN (not a number)"), "{}", e.message);
    }

    #[test]
    fn answers_serialise_as_documented() {
        let a = ApiResponse::Bill(BillReply {
            cycle_id: 1,
            bill: "1.5".into(),
            reward: "0".into(),
            total: "1.5".into(),
        });
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"bill":{"cycle_id":1,"bill":"1.5","reward":"0","total":"1.5"}}"#
        );
        let e = ApiResponse::error("bad_request", "x");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":{"code":"bad_request","message":"x"}}"#
        );
    }
}
