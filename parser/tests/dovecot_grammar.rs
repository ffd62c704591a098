//! Every response a real Dovecot 2.3.19 sent to a session that exercises
//! the response grammar (RFC 9051 and the extensions tandem passes on):
//! ENVELOPE with RFC 5322 groups (`(NIL NIL "group" NIL)`), BODYSTRUCTURE
//! of a multipart/mixed holding a multipart/alternative, an attachment
//! with disposition and location, and a message/rfc822 (every extension
//! field: MD5, disposition, language as a list, location), literal
//! subjects, BINARY[...] with literal8 and NUL, BINARY.SIZE, PREVIEW,
//! SNIPPET, MODSEQ, STATUS=SIZE, LIST-EXTENDED with LIST-STATUS, LSUB,
//! NAMESPACE, ID, ESEARCH and CONDSTORE SEARCH. Captured with
//! `tandem_tests::dovecot::Dovecot`; tagged lines have the tag `t`.
//! Each response is framed, parsed whole, parsed as streamed (the first
//! line of a response with a literal, and its lines without literal data)
//! and must keep its FETCH items and UIDs.

use tandem_parser::frame::{Limits, ResponseFramer, ResponseProgress, Segment};
use tandem_parser::response::{may_carry_uid, FetchItem, Response, ResponseBody};

const SERVER: &[u8] = b"* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY\r\n\
t OK Capability completed (0.001 + 0.000 secs).\r\n\
* ENABLED CONDSTORE\r\n\
t OK Enabled (0.001 + 0.000 secs).\r\n\
* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
* 7 EXISTS\r\n\
* 7 RECENT\r\n\
* OK [UNSEEN 1] First unseen.\r\n\
* OK [UIDVALIDITY 1796660872] UIDs valid\r\n\
* OK [UIDNEXT 8] Predicted next UID\r\n\
* OK [HIGHESTMODSEQ 8] Highest\r\n\
t OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (ENVELOPE (\"Mon, 7 Dec 2026 10:00:00 +0000\" \"groups\" ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) ((NIL NIL \"friends\" NIL)(\"Joe\" NIL \"joe\" \"example.org\")(NIL NIL \"bob\" \"example.org\")(NIL NIL NIL NIL)(NIL NIL \"carol\" \"example.org\")) NIL NIL \"<g1@example.org>\"))\r\n\
* 2 FETCH (ENVELOPE (NIL {20}\r\n\
mixed \"quoted\" \xc3\xa9t\xc3\xa9 ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"b\" \"example.org\")) NIL NIL NIL NIL))\r\n\
* 3 FETCH (ENVELOPE (NIL \"binary\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL))\r\n\
* 4 FETCH (ENVELOPE (NIL \"nul\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL))\r\n\
* 5 FETCH (ENVELOPE (NIL \"nul\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL))\r\n\
* 6 FETCH (ENVELOPE (NIL \"bin\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL))\r\n\
* 7 FETCH (ENVELOPE (NIL \"bin\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL))\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL))\r\n\
* 2 FETCH (BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 14 0 NIL NIL (\"fr\") NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") \"<h1@x>\" \"the html\" \"7bit\" 9 0 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" NIL NIL NIL) \"alternative\" (\"boundary\" \"YY\") NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 8 NIL (\"attachment\" (\"filename\" \"a.pdf\" \"size\" \"6\")) NIL \"a.pdf\")(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 75 (NIL \"inner\" ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 18 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"XX\") NIL (\"en\" \"de\") \"http://example.org/x\"))\r\n\
* 3 FETCH (BODYSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL \"binary\" 7 NIL NIL NIL NIL))\r\n\
* 4 FETCH (BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL))\r\n\
* 5 FETCH (BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL))\r\n\
* 6 FETCH (BODYSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 12 NIL NIL NIL NIL))\r\n\
* 7 FETCH (BODYSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL \"binary\" 7 NIL NIL NIL NIL))\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1))\r\n\
* 2 FETCH (BODY (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 14 0)(\"text\" \"html\" (\"charset\" \"utf-8\") \"<h1@x>\" \"the html\" \"7bit\" 9 0) \"alternative\")(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 8)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 75 (NIL \"inner\" ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 18 1) 5) \"mixed\"))\r\n\
* 3 FETCH (BODY (\"application\" \"octet-stream\" NIL NIL NIL \"binary\" 7))\r\n\
* 4 FETCH (BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1))\r\n\
* 5 FETCH (BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1))\r\n\
* 6 FETCH (BODY (\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 12))\r\n\
* 7 FETCH (BODY (\"application\" \"octet-stream\" NIL NIL NIL \"binary\" 7))\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (UID 1 MODSEQ (8) FLAGS (\\Recent) RFC822.SIZE 229 INTERNALDATE \"07-Dec-2026 16:27:52 +0000\")\r\n\
* 2 FETCH (UID 2 MODSEQ (8) FLAGS (\\Recent) RFC822.SIZE 868 INTERNALDATE \"07-Dec-2026 16:27:52 +0000\")\r\n\
* 3 FETCH (UID 3 MODSEQ (8) FLAGS (\\Recent) RFC822.SIZE 141 INTERNALDATE \"07-Dec-2026 16:27:52 +0000\")\r\n\
* 4 FETCH (UID 4 MODSEQ (8) FLAGS (\\Recent) RFC822.SIZE 44 INTERNALDATE \"07-Dec-2026 16:27:52 +0000\")\r\n\
* 5 FETCH (UID 5 MODSEQ (8) FLAGS (\\Recent) RFC822.SIZE 44 INTERNALDATE \"07-Dec-2026 16:27:52 +0000\")\r\n\
* 6 FETCH (UID 6 MODSEQ (8) FLAGS (\\Recent) RFC822.SIZE 143 INTERNALDATE \"07-Dec-2026 16:27:52 +0000\")\r\n\
* 7 FETCH (UID 7 MODSEQ (8) FLAGS (\\Recent) RFC822.SIZE 138 INTERNALDATE \"07-Dec-2026 16:27:52 +0000\")\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 4 FETCH (RFC822.SIZE 44 FLAGS (\\Seen \\Recent) BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n BINARY.SIZE[TEXT] 7 BODY[] {44}\r\n\
From: a@example.org\r\n\
Subject: nul\r\n\
\r\n\
ab\x80cd\r\n\
)\r\n\
* 5 FETCH (RFC822.SIZE 44 FLAGS (\\Seen \\Recent) BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n BINARY.SIZE[TEXT] 7 BODY[] {44}\r\n\
From: a@example.org\r\n\
Subject: nul\r\n\
\r\n\
ab\x80cd\r\n\
)\r\n\
* 6 FETCH (RFC822.SIZE 143 FLAGS (\\Seen \\Recent) BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n BINARY.SIZE[TEXT] 7 BODY[] {143}\r\n\
From: a@example.org\r\n\
Subject: bin\r\n\
MIME-Version: 1.0\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
YWIAY2QNCg==)\r\n\
* 7 FETCH (RFC822.SIZE 138 FLAGS (\\Seen \\Recent) BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n BINARY.SIZE[TEXT] 7 BODY[] {138}\r\n\
From: a@example.org\r\n\
Subject: bin\r\n\
MIME-Version: 1.0\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
ab\x80cd\r\n\
)\r\n\
* 4 FETCH (MODSEQ (9))\r\n\
* 5 FETCH (MODSEQ (9))\r\n\
* 6 FETCH (MODSEQ (9))\r\n\
* 7 FETCH (MODSEQ (9))\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (FLAGS (\\Seen \\Recent) BINARY.SIZE[1] 6 BINARY[1] {6}\r\n\
body\r\n\
)\r\n\
* 2 FETCH (FLAGS (\\Seen \\Recent) BINARY.SIZE[1] 273 BINARY[1] ~{275}\r\n\
--YY\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Language: fr\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
bonjour \xc3\xa9\r\n\
--YY\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-ID: <h1@x>\r\n\
Content-Description: the html\r\n\
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n\
\r\n\
<p>hi</p>\r\n\
--YY--\r\n\
)\r\n\
* 3 FETCH (FLAGS (\\Seen \\Recent) BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n\
)\r\n\
* 4 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n\
)\r\n\
* 5 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n\
)\r\n\
* 6 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n\
)\r\n\
* 7 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n\
ab\x00cd\r\n\
)\r\n\
* 1 FETCH (MODSEQ (10))\r\n\
* 2 FETCH (MODSEQ (10))\r\n\
* 3 FETCH (MODSEQ (10))\r\n\
t OK Fetch completed (0.002 + 0.000 + 0.001 secs).\r\n\
* 1 FETCH (PREVIEW \"body\")\r\n\
* 2 FETCH (PREVIEW {10}\r\n\
bonjour \xc3\xa9)\r\n\
* 3 FETCH (PREVIEW \"\")\r\n\
* 4 FETCH (PREVIEW \"abcd\")\r\n\
* 5 FETCH (PREVIEW \"abcd\")\r\n\
* 6 FETCH (PREVIEW \"\")\r\n\
* 7 FETCH (PREVIEW \"\")\r\n\
t OK Fetch completed (0.002 + 0.000 + 0.001 secs).\r\n\
* 1 FETCH (PREVIEW \"body\")\r\n\
* 2 FETCH (PREVIEW {10}\r\n\
bonjour \xc3\xa9)\r\n\
* 3 FETCH (PREVIEW \"\")\r\n\
* 4 FETCH (PREVIEW \"abcd\")\r\n\
* 5 FETCH (PREVIEW \"abcd\")\r\n\
* 6 FETCH (PREVIEW \"\")\r\n\
* 7 FETCH (PREVIEW \"\")\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (SNIPPET (FUZZY \"body\"))\r\n\
* 2 FETCH (SNIPPET (FUZZY {10}\r\n\
bonjour \xc3\xa9))\r\n\
* 3 FETCH (SNIPPET (FUZZY \"\"))\r\n\
* 4 FETCH (SNIPPET (FUZZY \"abcd\"))\r\n\
* 5 FETCH (SNIPPET (FUZZY \"abcd\"))\r\n\
* 6 FETCH (SNIPPET (FUZZY \"\"))\r\n\
* 7 FETCH (SNIPPET (FUZZY \"\"))\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 2 FETCH (BINARY.SIZE[1.1] 10 BINARY[1.1] ~{10}\r\n\
bonjour \xc3\xa9 BINARY[2]<0> ~{3}\r\n\
abc BODY[4.HEADER] {0}\r\n BODY[HEADER.FIELDS (SUBJECT)] {33}\r\n\
Subject: mixed \"quoted\" \xc3\xa9t\xc3\xa9\r\n\
\r\n\
)\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 2 FETCH (UID 2 BODY[] {868}\r\n\
From: a@example.org\r\n\
To: b@example.org\r\n\
Subject: mixed \"quoted\" \xc3\xa9t\xc3\xa9\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
Content-Language: en, de\r\n\
Content-Location: http://example.org/x\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: multipart/alternative; boundary=\"YY\"\r\n\
\r\n\
--YY\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
Content-Language: fr\r\n\
\r\n\
bonjour =C3=A9\r\n\
--YY\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-ID: <h1@x>\r\n\
Content-Description: the html\r\n\
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n\
\r\n\
<p>hi</p>\r\n\
--YY--\r\n\
--XX\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"; size=6\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Location: a.pdf\r\n\
\r\n\
YWJjZGVm\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.org\r\n\
To: group: ;\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
line 2\r\n\
--XX--\r\n\
)\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
t BAD Error in IMAP command STATUS: Invalid status item APPENDLIMIT (0.001 + 0.000 secs).\r\n\
* STATUS INBOX (SIZE 1607)\r\n\
t OK [CLIENTBUG] Status on selected mailbox completed (0.001 + 0.000 secs).\r\n\
t OK Create completed (0.005 + 0.000 + 0.005 secs).\r\n\
t OK Subscribe completed (0.001 + 0.000 secs).\r\n\
t NO Mailbox doesn't exist: gone (0.001 + 0.000 secs).\r\n\
* 1 FETCH (UID 1 ENVELOPE (\"Mon, 7 Dec 2026 10:00:00 +0000\" \"groups\" ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) ((NIL NIL \"friends\" NIL)(\"Joe\" NIL \"joe\" \"example.org\")(NIL NIL \"bob\" \"example.org\")(NIL NIL NIL NIL)(NIL NIL \"carol\" \"example.org\")) NIL NIL \"<g1@example.org>\") BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL))\r\n\
* 2 FETCH (UID 2 ENVELOPE (NIL {20}\r\n\
mixed \"quoted\" \xc3\xa9t\xc3\xa9 ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"b\" \"example.org\")) NIL NIL NIL NIL) BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 14 0 NIL NIL (\"fr\") NIL)(\"text\" \"html\" (\"charset\" \"utf-8\") \"<h1@x>\" \"the html\" \"7bit\" 9 0 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" NIL NIL NIL) \"alternative\" (\"boundary\" \"YY\") NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 8 NIL (\"attachment\" (\"filename\" \"a.pdf\" \"size\" \"6\")) NIL \"a.pdf\")(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 75 (NIL \"inner\" ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"inner\" \"example.org\")) ((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 18 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"XX\") NIL (\"en\" \"de\") \"http://example.org/x\"))\r\n\
* 3 FETCH (UID 3 ENVELOPE (NIL \"binary\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL \"binary\" 7 NIL NIL NIL NIL))\r\n\
* 4 FETCH (UID 4 ENVELOPE (NIL \"nul\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL))\r\n\
* 5 FETCH (UID 5 ENVELOPE (NIL \"nul\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1 NIL NIL NIL NIL))\r\n\
* 6 FETCH (UID 6 ENVELOPE (NIL \"bin\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 12 NIL NIL NIL NIL))\r\n\
* 7 FETCH (UID 7 ENVELOPE (NIL \"bin\" ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) NIL NIL NIL NIL NIL) BODYSTRUCTURE (\"application\" \"octet-stream\" NIL NIL NIL \"binary\" 7 NIL NIL NIL NIL))\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 2 FETCH (UID 2 RFC822.SIZE 868 ENVELOPE (NIL {20}\r\n\
mixed \"quoted\" \xc3\xa9t\xc3\xa9 ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"a\" \"example.org\")) ((NIL NIL \"b\" \"example.org\")) NIL NIL NIL NIL) BODY[] {868}\r\n\
From: a@example.org\r\n\
To: b@example.org\r\n\
Subject: mixed \"quoted\" \xc3\xa9t\xc3\xa9\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
Content-Language: en, de\r\n\
Content-Location: http://example.org/x\r\n\
\r\n\
preamble\r\n\
--XX\r\n\
Content-Type: multipart/alternative; boundary=\"YY\"\r\n\
\r\n\
--YY\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
Content-Language: fr\r\n\
\r\n\
bonjour =C3=A9\r\n\
--YY\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-ID: <h1@x>\r\n\
Content-Description: the html\r\n\
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n\
\r\n\
<p>hi</p>\r\n\
--YY--\r\n\
--XX\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"; size=6\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Location: a.pdf\r\n\
\r\n\
YWJjZGVm\r\n\
--XX\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@example.org\r\n\
To: group: ;\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
line 2\r\n\
--XX--\r\n\
)\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 2 FETCH (BODY[1.MIME] {54}\r\n\
Content-Type: multipart/alternative; boundary=\"YY\"\r\n\
\r\n BODY[4.TEXT]<2> {0}\r\n RFC822.HEADER {204}\r\n\
From: a@example.org\r\n\
To: b@example.org\r\n\
Subject: mixed \"quoted\" \xc3\xa9t\xc3\xa9\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\
Content-Language: en, de\r\n\
Content-Location: http://example.org/x\r\n\
\r\n BINARY[3] {75}\r\n\
From: inner@example.org\r\n\
To: group: ;\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
line 2 BINARY.SIZE[3] 75)\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* LIST (\\Subscribed \\HasNoChildren) \".\" a.b\r\n\
* STATUS a.b (MESSAGES 0 UIDNEXT 1 SIZE 0)\r\n\
t OK List completed (0.002 + 0.000 + 0.001 secs).\r\n\
* LIST (\\Subscribed \\HasNoChildren) \".\" a.b\r\n\
t OK List completed (0.001 + 0.000 secs).\r\n\
* LIST (\\NonExistent \\HasChildren) \".\" a\r\n\
* LIST (\\HasNoChildren) \".\" INBOX\r\n\
* STATUS INBOX (UIDNEXT 8 UIDVALIDITY 1796660872 HIGHESTMODSEQ 10)\r\n\
t OK List completed (0.001 + 0.000 secs).\r\n\
t OK List completed (0.001 + 0.000 secs).\r\n\
t OK Rename completed (0.001 + 0.000 secs).\r\n\
* LIST (\\HasNoChildren) \".\" c\r\n\
t OK List completed (0.001 + 0.000 secs).\r\n\
* LIST () \".\" c\r\n\
* LIST () \".\" INBOX\r\n\
t OK List completed (0.001 + 0.000 secs).\r\n\
* LSUB () \".\" a.b\r\n\
t OK Lsub completed (0.001 + 0.000 secs).\r\n\
t OK List completed (0.001 + 0.000 secs).\r\n\
* NAMESPACE ((\"\" \".\")) NIL NIL\r\n\
t OK Namespace completed (0.001 + 0.000 secs).\r\n\
* ID (\"name\" \"Dovecot\")\r\n\
t OK ID completed (0.001 + 0.000 secs).\r\n\
t BAD Error in IMAP command GETQUOTAROOT: Unknown command (0.001 + 0.000 secs).\r\n\
t NO [CANNOT] Generic mailbox attributes not enabled (0.001 + 0.000 secs).\r\n\
t BAD Error in IMAP command MYRIGHTS: Unknown command (0.001 + 0.000 secs).\r\n\
t BAD Error in IMAP command GETACL: Unknown command (0.001 + 0.000 secs).\r\n\
t BAD Error in IMAP command LISTRIGHTS: Unknown command (0.001 + 0.000 secs).\r\n\
* ESEARCH (TAG \"A043\") UID MIN 1 MAX 7 ALL 1:7 COUNT 7\r\n\
t OK Search completed (0.001 + 0.000 secs).\r\n\
* SEARCH 1 2 3 4 5 6 7 (MODSEQ 10)\r\n\
t OK Search completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ (10))\r\n\
* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent) MODSEQ (10))\r\n\
* 3 FETCH (UID 3 FLAGS (\\Seen \\Recent) MODSEQ (10))\r\n\
* 4 FETCH (UID 4 FLAGS (\\Seen \\Recent) MODSEQ (9))\r\n\
* 5 FETCH (UID 5 FLAGS (\\Seen \\Recent) MODSEQ (9))\r\n\
* 6 FETCH (UID 6 FLAGS (\\Seen \\Recent) MODSEQ (9))\r\n\
* 7 FETCH (UID 7 FLAGS (\\Seen \\Recent) MODSEQ (9))\r\n\
t OK Fetch completed (0.001 + 0.000 secs).\r\n\
* 1 FETCH (MODSEQ (11) FLAGS (\\Deleted \\Seen \\Recent))\r\n\
t OK Store completed (0.001 + 0.000 secs).\r\n\
* 1 EXPUNGE\r\n\
* 6 RECENT\r\n\
t OK Expunge completed (0.002 + 0.000 + 0.001 secs).\r\n\
t OK NOOP completed (0.001 + 0.000 secs).\r\n\
";

fn frames(input: &[u8]) -> Vec<&[u8]> {
    let mut f = ResponseFramer::new(Limits::default());
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(ResponseProgress::Complete { len }) = f.next(&input[at..]) {
        out.push(&input[at..at + len]);
        at += len;
    }
    assert_eq!(at, input.len(), "framing stopped early");
    out
}

/// The response's lines as a streaming proxy sees them: the first line,
/// and all lines without the literal data.
fn segments(resp: &[u8]) -> (Vec<u8>, bool, Vec<u8>) {
    let mut f = ResponseFramer::new(Limits::default());
    let (mut first, mut first_literal, mut skeleton) = (Vec::new(), false, Vec::new());
    let mut at = 0;
    while at < resp.len() {
        match f.next_segment(&resp[at..]).unwrap() {
            Segment::Line { len, literal } => {
                if first.is_empty() {
                    first = resp[at..at + len].to_vec();
                    first_literal = literal.is_some();
                }
                skeleton.extend_from_slice(&resp[at..at + len]);
                at += len;
            }
            Segment::LiteralData { len, .. } => at += len,
            Segment::Incomplete => panic!("incomplete"),
        }
    }
    (first, first_literal, skeleton)
}

fn uid(items: &[FetchItem]) -> Option<u32> {
    items.iter().find_map(|i| match i {
        FetchItem::Uid { value, .. } => Some(*value),
        _ => None,
    })
}

#[test]
fn every_response_dovecot_sent_parses() {
    let all = frames(SERVER);
    assert!(all.len() > 100, "{}", all.len());
    let mut fetches = 0;
    for resp in &all {
        let r = Response::parse(resp)
            .unwrap_or_else(|e| panic!("{e} in {}", String::from_utf8_lossy(resp)));
        if let ResponseBody::Fetch { items, .. } = &r.body {
            fetches += 1;
            assert!(!items.is_empty());
            assert!(may_carry_uid(resp));
        }
    }
    assert!(fetches > 60, "{fetches}");
}

#[test]
fn streamed_fetch_responses_keep_their_items_and_uid() {
    for resp in frames(SERVER) {
        let whole = Response::parse(resp).unwrap();
        let ResponseBody::Fetch { seq, items } = &whole.body else {
            continue;
        };
        let (first, first_literal, skeleton) = segments(resp);
        // The first line alone, as a proxy parses it before streaming the
        // literal: the same sequence number, the UID if it comes first.
        let head = Response::parse_fetch_head(&first)
            .unwrap_or_else(|e| panic!("{e} in {}", String::from_utf8_lossy(&first)));
        let ResponseBody::Fetch {
            seq: head_seq,
            items: head_items,
        } = &head.body
        else {
            panic!("not a FETCH")
        };
        assert_eq!(head_seq, seq);
        if !first_literal {
            assert_eq!(head_items.len(), items.len());
        }
        if matches!(items.first(), Some(FetchItem::Uid { .. })) {
            assert_eq!(uid(head_items), uid(items));
        }
        // All lines without the literal data.
        let sk = Response::parse_skeleton(&skeleton)
            .unwrap_or_else(|e| panic!("{e} in {}", String::from_utf8_lossy(&skeleton)));
        let ResponseBody::Fetch {
            items: sk_items, ..
        } = &sk.body
        else {
            panic!("not a FETCH")
        };
        assert_eq!(sk_items.len(), items.len());
        assert_eq!(uid(sk_items), uid(items));
    }
}

#[test]
fn envelopes_with_groups_parse_with_the_uid_after_them() {
    // RFC 9051 section 7.5.2: a group is (NIL NIL "name" NIL) ... (NIL NIL
    // NIL NIL), and the addresses of a field follow each other without SP.
    let envelopes: Vec<_> = frames(SERVER)
        .into_iter()
        .filter(|r| r.starts_with(b"* 1 FETCH (UID 1 ENVELOPE"))
        .collect();
    assert_eq!(envelopes.len(), 1);
    let r = Response::parse(envelopes[0]).unwrap();
    let ResponseBody::Fetch { items, .. } = &r.body else {
        panic!()
    };
    assert_eq!(uid(items), Some(1));
    let FetchItem::Other { name, value } = &items[1] else {
        panic!()
    };
    assert_eq!(name.of(envelopes[0]), b"ENVELOPE");
    assert!(value.of(envelopes[0]).ends_with(b"\"<g1@example.org>\")"));
    assert!(matches!(items[2], FetchItem::Other { .. }));
}
