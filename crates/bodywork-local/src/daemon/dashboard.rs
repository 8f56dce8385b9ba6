//! The dashboard at the gateway's `/ui/`: the pages `bodywork dashboard`
//! serves, read through the daemon's own client (the `ControlPlane` every
//! command reads through, over the daemon's socket) and served by the
//! gateway once its `Host` rules accepted the request; the dashboard's own
//! Host check (loopback with the gateway's port) applies as well.

use bodywork_dashboard::serve::{Site, answer, host};
use bodywork_gateway::{PageAnswer, Pages};

use crate::client::LocalControl;
use crate::home::Home;

/// Where the pages live on the gateway.
pub(super) const PREFIX: &str = "/ui";

pub(super) struct GatewayDashboard {
    control: LocalControl,
    /// The gateway's port, which a request's `Host` must name.
    port: u16,
}

impl GatewayDashboard {
    pub(super) fn new(home: Home, port: u16) -> GatewayDashboard {
        GatewayDashboard {
            control: LocalControl::in_daemon(home),
            port,
        }
    }
}

impl Pages for GatewayDashboard {
    fn prefix(&self) -> &str {
        PREFIX
    }

    fn answer<'a>(&'a self, head: &'a http::request::Parts) -> PageAnswer<'a> {
        Box::pin(async move {
            let site = Site {
                control: &self.control,
                base: PREFIX,
                port: self.port,
            };
            answer(
                site,
                &head.method,
                bodywork_dashboard::serve::path_and_query(&head.uri),
                host(&head.headers),
            )
            .await
        })
    }
}
