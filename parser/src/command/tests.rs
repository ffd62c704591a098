//! Tests of command parsing: RFC 9051 examples and the extensions tandem
//! reads, SASL PLAIN, AUTHENTICATE lines, IDLE's DONE, and the errors.

use super::*;
use crate::lexer::StrKind;

fn parse(b: &[u8]) -> Command<'_> {
    match Command::parse(b) {
        Ok(c) => c,
        Err(e) => panic!("{e} in {:?}", String::from_utf8_lossy(b)),
    }
}

fn set_bytes<'a>(c: &Command<'a>, s: &SetArg) -> &'a [u8] {
    s.span().of(c.buf)
}

#[test]
fn rfc9051_simple_commands() {
    for (line, body) in [
        (&b"a001 CAPABILITY\r\n"[..], CommandBody::Capability),
        (b"a002 NOOP\r\n", CommandBody::Noop),
        (b"A023 LOGOUT\r\n", CommandBody::Logout),
        (b"a002 STARTTLS\r\n", CommandBody::StartTls),
        (b"a002 idle\r\n", CommandBody::Idle),
        (b"A341 CLOSE\r\n", CommandBody::Close),
        (b"A341 UNSELECT\r\n", CommandBody::Unselect),
        (b"A202 EXPUNGE\r\n", CommandBody::Expunge { uids: None }),
    ] {
        assert_eq!(
            parse(line).body,
            body,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn rfc9051_login_with_quoted_and_literal_arguments() {
    let b = b"a001 LOGIN SMITH SESAME\r\n";
    let c = parse(b);
    let CommandBody::Login { user, password } = &c.body else {
        panic!()
    };
    assert_eq!(&*user.value(b), b"SMITH");
    assert_eq!(&*password.value(b), b"SESAME");
    let b = b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n";
    let c = parse(b);
    let CommandBody::Login { user, password } = &c.body else {
        panic!()
    };
    assert_eq!(&*user.value(b), b"FRED FOOBAR");
    assert_eq!(&*password.value(b), b"fat man");
    // Debug shows offsets only, never the password, in any form.
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("fat man"), "{dbg}");
    assert!(!dbg.contains("102, 97, 116"), "{dbg}");
    assert!(dbg.contains("A001") && dbg.contains("LOGIN"), "{dbg}");
}

#[test]
fn authenticate_plain_with_and_without_initial_response() {
    let b = b"a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n";
    let c = parse(b);
    let CommandBody::Authenticate { mechanism, initial } = c.body else {
        panic!()
    };
    assert_eq!(mechanism.of(b), b"PLAIN");
    assert_eq!(initial.unwrap().of(b), b"dGVzdAB0ZXN0AHRlc3Q=");
    let b = b"a AUTHENTICATE PLAIN\r\n";
    assert_eq!(
        parse(b).body,
        CommandBody::Authenticate {
            mechanism: Span { start: 15, end: 20 },
            initial: None
        }
    );
    assert!(Command::parse(b"a AUTHENTICATE PLAIN ab cd\r\n").is_err());
}

#[test]
fn select_examine_create_with_mailbox_spans() {
    let b = b"A142 SELECT INBOX\r\n";
    let c = parse(b);
    assert_eq!(c.mailboxes()[0].raw.of(b), b"INBOX");
    let b = b"A142 SELECT \"Sent Items\" (CONDSTORE)\r\n";
    let c = parse(b);
    let CommandBody::Select { mailbox, params } = &c.body else {
        panic!()
    };
    assert_eq!(mailbox.raw.of(b), b"\"Sent Items\"");
    assert_eq!(&*mailbox.value(b), b"Sent Items");
    assert_eq!(params.unwrap().of(b), b"(CONDSTORE)");
    assert!(matches!(
        parse(b"A932 EXAMINE blurdybloop\r\n").body,
        CommandBody::Examine { .. }
    ));
    assert!(matches!(
        parse(b"A003 CREATE owatagusiam/\r\n").body,
        CommandBody::Create { .. }
    ));
    assert!(matches!(
        parse(b"A683 DELETE blurdybloop\r\n").body,
        CommandBody::Delete { .. }
    ));
    let b = b"A683 RENAME blurdybloop sarasoop\r\n";
    let c = parse(b);
    let names: Vec<_> = c.mailboxes().iter().map(|m| m.raw.of(b)).collect();
    assert_eq!(names, vec![&b"blurdybloop"[..], b"sarasoop"]);
    assert!(matches!(
        parse(b"A002 SUBSCRIBE #news.comp.mail.mime\r\n").body,
        CommandBody::Subscribe { .. }
    ));
    assert!(matches!(
        parse(b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n").body,
        CommandBody::Unsubscribe { .. }
    ));
}

#[test]
fn rfc9051_status_items() {
    let b = b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n";
    let c = parse(b);
    let CommandBody::Status { items, .. } = &c.body else {
        panic!()
    };
    let items: Vec<_> = items.iter().map(|s| s.of(b)).collect();
    assert_eq!(items, vec![&b"UIDNEXT"[..], b"MESSAGES"]);
}

#[test]
fn rfc9051_append_with_flags_date_and_literal() {
    let b = b"A003 APPEND saved-messages (\\Seen) \"05-Jan-2021 14:20:00 +0100\" {22}\r\nSubject: hi\r\n\r\nhello\r\n\r\n";
    let c = parse(b);
    let CommandBody::Append { mailbox, messages } = &c.body else {
        panic!()
    };
    assert_eq!(mailbox.raw.of(b), b"saved-messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].flags[0].of(b), b"\\Seen");
    assert_eq!(
        &*messages[0].date.unwrap().value(b),
        b"05-Jan-2021 14:20:00 +0100"
    );
    assert_eq!(
        &*messages[0].message.value(b),
        b"Subject: hi\r\n\r\nhello\r\n"
    );
}

#[test]
fn rfc3502_multiappend_has_one_entry_per_message() {
    let b = b"A003 APPEND saved-messages (\\Seen) {3+}\r\nabc (\\Flagged $Label) ~{2}\r\nde {1+}\r\nf\r\n";
    let c = parse(b);
    let CommandBody::Append { messages, .. } = &c.body else {
        panic!()
    };
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1].flags.len(), 2);
    assert!(matches!(
        messages[1].message.kind,
        StrKind::Literal { binary: true, .. }
    ));
    assert!(messages[2].flags.is_empty());
    assert_eq!(&*messages[2].message.value(b), b"f");
}

#[test]
fn append_without_message_or_with_catenate_is_rejected() {
    assert!(Command::parse(b"A APPEND INBOX\r\n").is_err());
    assert!(Command::parse(b"A APPEND INBOX (\\Seen)\r\n").is_err());
    assert!(Command::parse(b"A APPEND INBOX CATENATE (TEXT {1}\r\nx)\r\n").is_err());
}

#[test]
fn uid_forms_expose_their_uid_sets() {
    let b = b"A003 UID COPY 2:4,8 MEETING\r\n";
    let c = parse(b);
    assert!(c.uid);
    assert!(c.is_mutation());
    assert_eq!(set_bytes(&c, c.uid_sets()[0]), b"2:4,8");
    let b = b"a uid move 1:* Trash\r\n";
    let c = parse(b);
    assert!(matches!(c.body, CommandBody::Move { .. }));
    assert_eq!(set_bytes(&c, c.uid_sets()[0]), b"1:*");
    // Plain COPY carries sequence numbers: nothing to rewrite.
    assert!(parse(b"A003 COPY 2:4 MEETING\r\n").uid_sets().is_empty());
    // RFC 4315 UID EXPUNGE.
    let b = b"A003 UID EXPUNGE 3000:3002\r\n";
    let c = parse(b);
    assert_eq!(set_bytes(&c, c.uid_sets()[0]), b"3000:3002");
    assert!(Command::parse(b"A003 UID EXPUNGE\r\n").is_err());
}

#[test]
fn rfc9051_store_forms() {
    let b = b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n";
    let c = parse(b);
    let CommandBody::Store {
        mode,
        silent,
        flags,
        ..
    } = &c.body
    else {
        panic!()
    };
    assert_eq!((*mode, *silent, flags.len()), (StoreMode::Add, false, 1));
    let b = b"A4 UID STORE 7 -FLAGS.SILENT (\\Seen $Junk NonJunk)\r\n";
    let c = parse(b);
    let CommandBody::Store {
        mode,
        silent,
        flags,
        set,
        ..
    } = &c.body
    else {
        panic!()
    };
    assert_eq!((*mode, *silent, flags.len()), (StoreMode::Remove, true, 3));
    assert_eq!(flags[1].of(b), b"$Junk");
    assert_eq!(set.span().of(b), b"7");
    let b = b"A5 STORE 1 FLAGS \\Seen \\Answered\r\n";
    let CommandBody::Store { mode, flags, .. } = parse(b).body else {
        panic!()
    };
    assert_eq!((mode, flags.len()), (StoreMode::Replace, 2));
    // RFC 7162 section 3.1.3 UNCHANGEDSINCE.
    let b = b"d105 UID STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n";
    let c = parse(b);
    let CommandBody::Store { modifiers, .. } = &c.body else {
        panic!()
    };
    assert_eq!(modifiers.unwrap().of(b), b"(UNCHANGEDSINCE 320162338)");
    assert!(Command::parse(b"A STORE 1 +FLAGZ (\\Seen)\r\n").is_err());
}

#[test]
fn fetch_items_and_modifiers() {
    let b = b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n";
    let c = parse(b);
    let CommandBody::Fetch { items, .. } = &c.body else {
        panic!()
    };
    assert_eq!(items.of(b), b"(FLAGS BODY[HEADER.FIELDS (DATE FROM)])");
    let b = b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n";
    let c = parse(b);
    assert_eq!(set_bytes(&c, c.uid_sets()[0]), b"300:500");
    let b = b"a UID FETCH 1:* FAST\r\n";
    assert!(matches!(parse(b).body, CommandBody::Fetch { .. }));
    let b = b"a UID FETCH $ (UID)\r\n";
    assert!(matches!(parse(b).uid_sets()[0], SetArg::Saved { .. }));
}

#[test]
fn search_finds_uid_criteria_at_any_depth_and_not_in_arguments() {
    let b = b"A282 SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (UID 1:5 FLAGGED) NOT UID 9 SUBJECT UID 4:6 HEADER UID \"UID\"\r\n";
    let c = parse(b);
    let sets: Vec<_> = c.uid_sets().iter().map(|s| set_bytes(&c, s)).collect();
    // "SUBJECT UID" is a subject; "4:6" after it is a sequence set.
    assert_eq!(sets, vec![&b"1:5"[..], b"9"]);
    let CommandBody::Search { ret, charset, .. } = &c.body else {
        panic!()
    };
    assert_eq!(ret.unwrap().of(b), b"(MIN COUNT)");
    assert_eq!(charset.unwrap().raw.of(b), b"UTF-8");
    let b = b"a UID SEARCH 1:10 MODSEQ \"/flags/\\\\draft\" all 620162338 LARGER 5 SINCE 1-Feb-1994\r\n";
    let c = parse(b);
    assert!(c.uid && c.uid_sets().is_empty());
    assert!(Command::parse(b"a SEARCH XUNKNOWN 5 UID 3\r\n").is_err());
}

#[test]
fn enable_id_compress() {
    let b = b"t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n";
    let CommandBody::Enable { capabilities } = parse(b).body else {
        panic!()
    };
    assert_eq!(capabilities.len(), 2);
    let b = b"a023 ID (\"name\" \"sodr\" \"version\" \"19.34\")\r\n";
    assert!(matches!(parse(b).body, CommandBody::Id { .. }));
    assert!(matches!(
        parse(b"a ID NIL\r\n").body,
        CommandBody::Id { .. }
    ));
    let b = b"a COMPRESS DEFLATE\r\n";
    let CommandBody::Compress { mechanism } = parse(b).body else {
        panic!()
    };
    assert_eq!(mechanism.of(b), b"DEFLATE");
}

#[test]
fn unknown_commands_are_other_when_well_formed() {
    let b = b"A101 LIST \"\" %\r\n";
    assert_eq!(parse(b).body, CommandBody::Other);
    assert_eq!(parse(b"a GETQUOTAROOT INBOX\r\n").body, CommandBody::Other);
    assert_eq!(parse(b"a NAMESPACE\r\n").body, CommandBody::Other);
    assert_eq!(parse(b"a XFOO {3}\r\nabc\r\n").body, CommandBody::Other);
    assert_eq!(parse(b"a UID XFOO 1\r\n").body, CommandBody::Other);
    assert!(Command::parse(b"a LIST \"unterminated\r\n").is_err());
    assert!(Command::parse(b"a XFOO ((\r\n").is_err());
}

#[test]
fn rfc9051_list_and_lsub_patterns_table() {
    // list-mailbox = 1*list-char / string; list-char = ATOM-CHAR /
    // list-wildcards / resp-specials: "[" and "]" stand unquoted.
    for b in [
        &b"a LIST \"\" foo[bar\r\n"[..],
        b"a LIST \"\" \"foo[bar\"\r\n",
        b"a LIST \"\" foo]bar\r\n",
        b"a LIST \"\" [\r\n",
        b"a LIST \"\" %[*]%\r\n",
        b"a LIST ref[ *\r\n",
        b"a LIST \"\" {7}\r\nfoo[bar\r\n",
        b"a LSUB \"#news.\" comp.mail.*\r\n",
        b"a LSUB \"\" foo[bar\r\n",
        // RFC 5258 LIST-EXTENDED.
        b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"*\" foo[ %) RETURN (CHILDREN STATUS (MESSAGES UIDNEXT))\r\n",
        b"a LIST () \"\" (INBOX)\r\n",
        b"a LIST \"\" \"%\" RETURN (SPECIAL-USE)\r\n",
        // Other commands whose astrings hold "[" or "]".
        b"a GETQUOTAROOT foo[bar\r\n",
        b"a MYRIGHTS foo]bar\r\n",
        b"a SETACL foo[bar fred +r\r\n",
        b"a GETMETADATA foo[ (/shared/comment)\r\n",
    ] {
        assert_eq!(
            Command::parse(b).map(|c| c.body),
            Ok(CommandBody::Other),
            "{}",
            b.escape_ascii()
        );
    }
    for b in [
        &b"a LIST \"\"\r\n"[..],
        b"a LIST \"\" foo bar\r\n",
        b"a LIST \"\" foo(bar\r\n",
        b"a LIST \"\" (foo\r\n",
        b"a LIST \"\" * RETURN\r\n",
        b"a LIST \"\" * EXTRA ()\r\n",
        b"a LSUB () \"\" *\r\n",
        b"a LIST () \"\" ()\r\n",
        b"a LSUB \"\" * RETURN ()\r\n",
    ] {
        assert!(Command::parse(b).is_err(), "{}", b.escape_ascii());
    }
    // Mailbox names hold "[" and "]" as astrings (ASTRING-CHAR).
    let b = b"a SELECT foo[bar]\r\n";
    let CommandBody::Select { mailbox, .. } = parse(b).body else {
        panic!()
    };
    assert_eq!(mailbox.raw.of(b), b"foo[bar]");
}

#[test]
fn authenticate_lines_and_idle_done() {
    assert_eq!(parse_auth_line(b"*\r\n"), Ok(AuthLine::Cancel));
    assert_eq!(
        parse_auth_line(b"dGVzdAB0ZXN0AHRlc3Q=\r\n"),
        Ok(AuthLine::Response(Span { start: 0, end: 20 }))
    );
    assert_eq!(
        parse_auth_line(b"\r\n"),
        Ok(AuthLine::Response(Span { start: 0, end: 0 }))
    );
    assert!(parse_auth_line(b"abc def\r\n").is_err());
    assert!(parse_auth_line(b"* x\r\n").is_err());
    assert!(is_idle_done(b"DONE\r\n"));
    assert!(is_idle_done(b"done\r\n"));
    assert!(!is_idle_done(b"DONE \r\n"));
    assert!(!is_idle_done(b"a DONE\r\n"));
}

#[test]
fn commands_with_uids_this_parser_does_not_locate_are_flagged() {
    for line in [
        &b"a UID SORT (DATE) UTF-8 ALL\r\n"[..],
        b"a SORT (DATE) UTF-8 UID 1:5\r\n",
        b"a THREAD REFERENCES UTF-8 UID 1:5\r\n",
        b"a UID XFOO 1:5\r\n",
        b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211))\r\n",
    ] {
        assert!(
            parse(line).has_unparsed_uids(),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    for line in [
        &b"a UID FETCH 1:5 FLAGS\r\n"[..],
        b"a SELECT INBOX (CONDSTORE)\r\n",
        b"a LIST \"\" *\r\n",
        b"a SEARCH UID 1:5\r\n",
    ] {
        assert!(
            !parse(line).has_unparsed_uids(),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn rfc4616_sasl_plain_is_decoded_and_redacted() {
    // "\0tim\0tanstaaftanstaaf", RFC 4616 section 4.
    let p = sasl_plain(b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap();
    assert_eq!(p.authzid, b"");
    assert_eq!(p.authcid, b"tim");
    assert_eq!(p.password, b"tanstaaftanstaaf");
    assert!(!format!("{p:?}").contains("tanstaaf"));
    // "Ursel\0Kurt\0xipj3plmq"
    let p = sasl_plain(b"VXJzZWwAS3VydAB4aXBqM3BsbXE=").unwrap();
    assert_eq!(
        (&p.authzid[..], &p.authcid[..]),
        (&b"Ursel"[..], &b"Kurt"[..])
    );
    assert_eq!(sasl_plain(b"!!"), Err(SaslError::Base64));
    assert_eq!(sasl_plain(b"="), Err(SaslError::Malformed));
    // "a\0b" has no password.
    assert_eq!(sasl_plain(b"YQBi"), Err(SaslError::Malformed));
}

#[test]
fn trailing_garbage_and_missing_crlf_are_errors() {
    assert!(Command::parse(b"a NOOP\r\n").is_ok());
    assert!(Command::parse(b"a NOOP").is_err());
    assert!(Command::parse(b"a NOOP x\r\n").is_err());
    assert!(Command::parse(b"a NOOP\r\nb NOOP\r\n").is_err());
    assert!(Command::parse(b"a SELECT INBOX extra\r\n").is_err());
    assert!(Command::parse(b"+ NOOP\r\n").is_err());
    assert!(Command::parse(b" NOOP\r\n").is_err());
}

#[test]
fn a_literal_cannot_hide_a_second_command() {
    // The literal's data holds what looks like a command; it is data.
    let b = b"a LOGIN {19}\r\nx\r\nb DELETE INBOX\r\n pw\r\n";
    let c = parse(b);
    assert!(matches!(c.body, CommandBody::Login { .. }));
    let CommandBody::Login { user, .. } = &c.body else {
        panic!()
    };
    assert_eq!(&*user.value(b), b"x\r\nb DELETE INBOX\r\n");
}
