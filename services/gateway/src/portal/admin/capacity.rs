//! The admin portal's capacity page: each model's measured capacity,
//! headroom, what is on sale against what is sold over time, and changing
//! capacity or headroom (confirmed first; the contracts service refuses a
//! change that would leave sold capacity uncovered, naming the contracts in
//! the way).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use reservoir_proto::v1 as pb;
use serde::Deserialize;

use crate::portal::admin::chrome;
use crate::portal::admin::overview::NoticeQuery;
use crate::portal::page::{Chrome, PageForm, PageQuery, STALE_FORM, back_with_notice, html, refusal, service_refusal};
use crate::portal::pool::{self, LAST_MONTH, PoolView};
use crate::portal::session::{AdminUser, csrf_ok};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "portal/admin_capacity.html")]
struct CapacityPage {
    chrome: Chrome,
    pools: Vec<PoolView>,
}

pub async fn page(State(state): State<AppState>, user: AdminUser, PageQuery(q): PageQuery<NoticeQuery>) -> Response {
    match pool::gather(&state, &[LAST_MONTH]).await {
        Ok(pools) => html(StatusCode::OK, &CapacityPage { chrome: chrome(&user, "Capacity", q.notice), pools }),
        Err(refused) => refused,
    }
}

/// A change of a model's capacity or headroom, as the form sends it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChangeForm {
    pub model: String,
    #[serde(default)]
    pub capacity: String,
    #[serde(default)]
    pub headroom: String,
}

impl ChangeForm {
    fn request(&self) -> Result<pb::UpdateModelRequest, String> {
        let capacity = match self.capacity.trim() {
            "" => None,
            text => Some(
                text.parse::<u32>()
                    .map_err(|_| format!("Capacity {text:?} is not a whole number of tokens per second."))?,
            ),
        };
        let headroom = Some(self.headroom.trim().to_owned()).filter(|h| !h.is_empty());
        if capacity.is_none() && headroom.is_none() {
            return Err("Give a new capacity, a new headroom, or both.".into());
        }
        Ok(pb::UpdateModelRequest {
            id: self.model.clone(),
            capacity_tokens_per_s: capacity,
            headroom,
            ..Default::default()
        })
    }
}

#[derive(Template)]
#[template(path = "portal/admin_capacity_confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    form: ChangeForm,
    current: crate::api::Model,
}

/// `/admin/ui/capacity/confirm`: the change beside the current figures.
pub async fn confirm(
    State(state): State<AppState>,
    user: AdminUser,
    PageQuery(form): PageQuery<ChangeForm>,
) -> Response {
    if let Err(problem) = form.request() {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, &problem);
    }
    let current = match state.contracts.clone().get_model(pb::GetModelRequest { id: form.model.clone() }).await {
        Ok(model) => crate::api::Model::from(model.into_inner()),
        Err(status) => return service_refusal(status),
    };
    html(StatusCode::OK, &ConfirmPage { chrome: chrome(&user, "Capacity", None), form, current })
}

#[derive(Debug, Deserialize)]
pub struct ChangeSubmit {
    pub csrf: String,
    #[serde(flatten)]
    pub change: ChangeForm,
}

pub async fn change(
    State(state): State<AppState>,
    user: AdminUser,
    PageForm(form): PageForm<ChangeSubmit>,
) -> Response {
    if !csrf_ok(&user.csrf, &form.csrf) {
        return refusal(StatusCode::FORBIDDEN, STALE_FORM);
    }
    let request = match form.change.request() {
        Ok(request) => request,
        Err(problem) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &problem),
    };
    match state.contracts.clone().update_model(request).await {
        Ok(model) => {
            let m = model.into_inner();
            let notice = format!(
                "{}: capacity {} tokens/s, headroom {}, {} on sale",
                m.id, m.capacity_tokens_per_s, m.headroom, m.sellable_tokens_per_s
            );
            back_with_notice("/admin/ui/capacity", &[], &notice)
        }
        Err(status) => service_refusal(status),
    }
}
