//! `dwctl contacts …`: CRM contacts — upsert (role `manager` or `service`), search, get, and a
//! client's erasure (`erase-client`).

use anyhow::Result;
use chrono::{DateTime, Utc};
use dw_proto::messaging::v1::contact_service_client::ContactServiceClient;
use dw_proto::messaging::v1::{
    Contact, EraseClientDataRequest, GetContactRequest, SearchContactsRequest, SearchContactsResponse,
    UpsertContactRequest,
};

use crate::cli::ContactsCommand;
use crate::output::{self as out, Printer, names, or_dash};
use crate::paging;
use crate::rpc::Rpc;

pub async fn run(command: ContactsCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    let mut client = ContactServiceClient::new(rpc.channel.clone());
    let now = Utc::now();
    match command {
        ContactsCommand::Upsert { name, phone, external_id, tags } => {
            let request = UpsertContactRequest {
                request_id: rpc.request_id(),
                name,
                phone,
                external_id: external_id.unwrap_or_default(),
                tags,
            };
            let contact = client.upsert_contact(rpc.request(request)).await?.into_inner();
            printer.emit(names::CONTACT, &contact, |c| contact_text(c, now))
        }
        ContactsCommand::Search { name, phone, page_size, page_token, all } => {
            let request = SearchContactsRequest {
                name: name.unwrap_or_default(),
                phone: phone.unwrap_or_default(),
                page_size: page_size.unwrap_or(0),
                page_token: page_token.unwrap_or_default(),
            };
            let response = paging::collect(request, all, |request| {
                let mut client = client.clone();
                let request = rpc.request(request);
                async move { client.search_contacts(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
            printer.emit(names::SEARCH_CONTACTS, &response, |r: &SearchContactsResponse| {
                contacts_table(&r.contacts) + &paging::next_page_line(&r.next_page_token)
            })
        }
        ContactsCommand::Get { contact_id } => {
            let contact = client.get_contact(rpc.request(GetContactRequest { contact_id })).await?.into_inner();
            printer.emit(names::CONTACT, &contact, |c| contact_text(c, now))
        }
        ContactsCommand::EraseClient { phone, reason } => {
            let request = EraseClientDataRequest { request_id: rpc.request_id(), phone, reason };
            let erased = client.erase_client_data(rpc.request(request)).await?.into_inner();
            printer.emit(names::ERASE_CONTACT_DATA, &erased, |e| {
                out::fields(&[
                    ("erasure", e.erasure_id.clone()),
                    ("contact erased", if e.contact_erased { "yes" } else { "no" }.to_owned()),
                    ("messages sent erased", e.messages_erased.to_string()),
                    ("messages received erased", e.inbound_erased.to_string()),
                ])
            })
        }
    }
}

pub fn contact_text(contact: &Contact, now: DateTime<Utc>) -> String {
    out::fields(&[
        ("contact", contact.contact_id.clone()),
        ("name", contact.name.clone()),
        ("phone", contact.phone.clone()),
        ("external id", or_dash(&contact.external_id)),
        ("tags", out::list(&contact.tags)),
        ("sms opted out", out::yes_no(contact.sms_opted_out).to_owned()),
        ("version", contact.version.to_string()),
        ("updated", out::timestamp_ago(contact.updated_at.as_ref(), now)),
    ])
}

pub fn contacts_table(contacts: &[Contact]) -> String {
    out::table_of(&["NAME", "PHONE", "EXTERNAL ID", "TAGS", "SMS", "CONTACT"], contacts, |c| {
        vec![
            c.name.clone(),
            c.phone.clone(),
            or_dash(&c.external_id),
            out::list(&c.tags),
            if c.sms_opted_out { "opted out".to_owned() } else { "-".to_owned() },
            c.contact_id.clone(),
        ]
    })
}
