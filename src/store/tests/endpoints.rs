//! The store's unit tests of endpoints: secrets and their rotation, deletion with messages.

use super::*;

#[test]
fn rotation_keeps_the_old_secret_for_its_grace() {
    let (_d, s) = store();
    let ep = endpoint(&s, &[]);
    let old = s.active_secrets(ep.seq, 1).unwrap();
    s.rotate_secret(ep.seq, "whsec_new", 100, 50).unwrap();
    let during = s.active_secrets(ep.seq, 120).unwrap();
    assert_eq!(during, vec!["whsec_new".to_string(), old[0].clone()]);
    assert_eq!(
        s.active_secrets(ep.seq, 150).unwrap(),
        vec!["whsec_new".to_string()]
    );
}

#[test]
fn delete_takes_messages_with_it() {
    let (_d, s) = store();
    let ep = endpoint(&s, &[]);
    s.publish(&mut [event("incident.created", None)], 10)
        .unwrap();
    assert!(s.delete_endpoint(&ep.id).unwrap().is_some());
    assert!(
        s.list_messages(&MessageFilter::default(), None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(s.delete_endpoint(&ep.id).unwrap().is_none());
}
