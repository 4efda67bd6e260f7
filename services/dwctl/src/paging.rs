//! Listings that come in pages: print one page (the first, or `--page-token`'s) with the token of
//! the next, or follow every page and print them as one.

use std::future::Future;

use anyhow::{Result, bail};
use dw_proto::agentsessions::v1::{ListAgentStatusesRequest, ListAgentStatusesResponse};
use dw_proto::distribution::v1::{SearchProtocolsRequest, SearchProtocolsResponse};
use dw_proto::messaging::v1::{
    ListTemplatesRequest, ListTemplatesResponse, SearchContactsRequest, SearchContactsResponse,
};
use dw_proto::notifications::v1::{
    ListDeliveriesRequest, ListDeliveriesResponse, ListNotificationsRequest, ListNotificationsResponse,
    ListWebhooksRequest, ListWebhooksResponse,
};

/// A request for one page of a listing.
pub trait PageRequest: Clone {
    /// The token of the page asked for (empty: the first page).
    fn page_token(&mut self) -> &mut String;
}

/// One page of a listing, or several pages put together.
pub trait Page: Default {
    /// Appends the items of `next` and takes over its next page token.
    fn append(&mut self, next: Self);
    /// The token of the page after this one (empty: this was the last page).
    fn next_page_token(&mut self) -> &mut String;
}

/// Makes a listing pageable: its request names a page by `page_token`, its response carries the
/// `$items` of the page and the `next_page_token`.
macro_rules! paged_listing {
    ($request:ty => $response:ty, items: $items:ident) => {
        impl PageRequest for $request {
            fn page_token(&mut self) -> &mut String {
                &mut self.page_token
            }
        }

        impl Page for $response {
            fn append(&mut self, next: Self) {
                self.$items.extend(next.$items);
                self.next_page_token = next.next_page_token;
            }

            fn next_page_token(&mut self) -> &mut String {
                &mut self.next_page_token
            }
        }
    };
}

paged_listing!(ListAgentStatusesRequest => ListAgentStatusesResponse, items: agents);
paged_listing!(SearchProtocolsRequest => SearchProtocolsResponse, items: tasks);
paged_listing!(ListTemplatesRequest => ListTemplatesResponse, items: templates);
paged_listing!(ListNotificationsRequest => ListNotificationsResponse, items: notifications);
paged_listing!(SearchContactsRequest => SearchContactsResponse, items: contacts);
paged_listing!(ListWebhooksRequest => ListWebhooksResponse, items: webhooks);
paged_listing!(ListDeliveriesRequest => ListDeliveriesResponse, items: deliveries);

/// Fetches the page `request` asks for; with `follow`, every page after it too (the items
/// concatenated, no next page token). A server that hands out the same token twice is an error
/// rather than an endless loop.
pub async fn collect<Req, Resp, F, Fut>(mut request: Req, follow: bool, mut fetch: F) -> Result<Resp>
where
    Req: PageRequest,
    Resp: Page,
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Resp, tonic::Status>>,
{
    let mut result = Resp::default();
    loop {
        let page = fetch(request.clone()).await?;
        result.append(page);
        let next = result.next_page_token();
        if !follow || next.is_empty() {
            return Ok(result);
        }
        if next == request.page_token() {
            bail!("the server returned the same page token twice ({next}); stopping");
        }
        *request.page_token() = std::mem::take(next);
    }
}

/// The line under a page that says how to fetch the next one; empty after the last page.
pub fn next_page_line(next_page_token: &str) -> String {
    if next_page_token.is_empty() {
        String::new()
    } else {
        format!("next page: --page-token {next_page_token}  (or --all for every page)\n")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use dw_proto::agentsessions::v1::AgentStatusView;
    use dw_proto::distribution::v1::Task;
    use dw_proto::messaging::v1::{Contact, Template};
    use dw_proto::notifications::v1::{Delivery, SingleNotification, Webhook};

    use super::*;

    /// A test of [`collect`] on one listing, whose items are told apart by one field.
    macro_rules! follows_pages_only_with_all {
        ($test:ident: $request:ident => $response:ident, $items:ident of $item:ident by $key:ident) => {
            #[tokio::test]
            async fn $test() {
                let page = |key: &str, next: &str| $response {
                    $items: vec![$item { $key: key.into(), ..Default::default() }],
                    next_page_token: next.into(),
                };
                let keys = |page: &$response| page.$items.iter().map(|item| item.$key.clone()).collect();
                check_three_pages::<$request, _>(page, keys).await;
            }
        };
    }

    follows_pages_only_with_all!(search_follows_pages_only_with_all:
        SearchProtocolsRequest => SearchProtocolsResponse, tasks of Task by protocol);
    follows_pages_only_with_all!(notifications_list_follows_pages_only_with_all:
        ListNotificationsRequest => ListNotificationsResponse, notifications of SingleNotification by message_id);
    follows_pages_only_with_all!(templates_list_follows_pages_only_with_all:
        ListTemplatesRequest => ListTemplatesResponse, templates of Template by name);
    follows_pages_only_with_all!(contact_search_follows_pages_only_with_all:
        SearchContactsRequest => SearchContactsResponse, contacts of Contact by contact_id);
    follows_pages_only_with_all!(webhooks_list_follows_pages_only_with_all:
        ListWebhooksRequest => ListWebhooksResponse, webhooks of Webhook by webhook_id);
    follows_pages_only_with_all!(deliveries_list_follows_pages_only_with_all:
        ListDeliveriesRequest => ListDeliveriesResponse, deliveries of Delivery by delivery_id);
    follows_pages_only_with_all!(agent_statuses_follow_pages_only_with_all:
        ListAgentStatusesRequest => ListAgentStatusesResponse, agents of AgentStatusView by agent_id);

    /// Checks [`collect`] on one kind of listing: three pages of one item each (`""` → `t2` →
    /// `t3` → the end), built by `page(item, next_page_token)` and read back by `items`.
    async fn check_three_pages<Req, Resp>(page: impl Fn(&str, &str) -> Resp, items: impl Fn(&Resp) -> Vec<String>)
    where
        Req: PageRequest + Default,
        Resp: Page + Clone,
    {
        let pages = HashMap::from([
            (String::new(), page("p3", "t2")),
            ("t2".to_owned(), page("p2", "t3")),
            ("t3".to_owned(), page("p1", "")),
        ]);
        let seen = Mutex::new(Vec::new());
        let fetch = |mut request: Req| {
            let token = request.page_token().clone();
            seen.lock().unwrap().push(token.clone());
            let page = pages.get(&token).cloned();
            async move { page.ok_or_else(|| tonic::Status::invalid_argument("bad token")) }
        };
        let asking_for = |token: &str| {
            let mut request = Req::default();
            *request.page_token() = token.to_owned();
            request
        };

        let mut one = collect(Req::default(), false, fetch).await.unwrap();
        assert_eq!(items(&one), ["p3"]);
        assert_eq!(one.next_page_token(), "t2");
        let mut all = collect(Req::default(), true, fetch).await.unwrap();
        assert_eq!(items(&all), ["p3", "p2", "p1"]);
        assert_eq!(all.next_page_token(), "");
        assert_eq!(*seen.lock().unwrap(), ["", "", "t2", "t3"]);
        assert_eq!(items(&collect(asking_for("t3"), true, fetch).await.unwrap()), ["p1"]);
        let stuck = |_| async { Ok(page("p", "same")) };
        assert!(collect(asking_for("same"), true, stuck).await.is_err());
        let failing = |_| async { Err::<Resp, _>(tonic::Status::permission_denied("listing")) };
        assert!(collect(Req::default(), true, failing).await.is_err());
    }

    #[test]
    fn the_next_page_line_names_the_token() {
        assert_eq!(next_page_line(""), "");
        assert_eq!(next_page_line("abc"), "next page: --page-token abc  (or --all for every page)\n");
    }
}
