//! The dashboard at the gateway's `/ui/`: the pages `bodywork dashboard`
//! serves, read through the daemon's own client (the `ControlPlane` every
//! command reads through, over the daemon's socket) and served by the
//! gateway once its `Host` rules accepted the request; the dashboard's own
//! Host check (loopback with the gateway's port) applies as well, and so
//! do its checks of the redeploy and delete forms (a token of this daemon
//! process, the `Origin`). Live tails stream, at most 16 at once.

use std::sync::Arc;

use bodywork_dashboard::{Embedded, TokenError};
use bodywork_gateway::{PageAnswer, PageBody, PageRequest, Pages};
use bodywork_runtime::CancellationToken;

use crate::client::LocalControl;
use crate::home::Home;

/// Where the pages live on the gateway.
pub(super) const PREFIX: &str = "/ui";

pub(super) struct GatewayDashboard(Embedded);

impl GatewayDashboard {
    /// The pages for a gateway on `port` (which a request's `Host` must
    /// name); its live tails end when `stop` (the gateway's) is cancelled.
    pub(super) fn new(
        home: Home,
        port: u16,
        stop: CancellationToken,
    ) -> Result<GatewayDashboard, TokenError> {
        let control = Arc::new(LocalControl::in_daemon(home));
        Ok(GatewayDashboard(Embedded::new(
            control, PREFIX, port, stop,
        )?))
    }
}

impl Pages for GatewayDashboard {
    fn prefix(&self) -> &str {
        PREFIX
    }

    fn answer(&self, request: PageRequest) -> PageAnswer<'_> {
        Box::pin(async move {
            self.0
                .answer(request)
                .await
                .map(|body| Box::pin(body) as PageBody)
        })
    }
}
