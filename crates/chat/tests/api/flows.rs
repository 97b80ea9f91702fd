//! Rooms, moderation, messages, blocks, delivery, limits, cards, GDPR.

use super::*;

kit::backend_tests! {
    async fn rooms_have_roles_and_admins_moderate_members_but_never_the_owner(db) {
        let p = Platform::start(db).await;
        let (ada, bob, cy) = (p.user("Ada").await, p.user("Bob").await, p.user("Cy").await);
        let room = p.room(&ada, "pong-lovers", "public", &[&bob, &cy]).await;
        let base = format!("/v1/chat/rooms/{room}");
        // Names are unique without regard to case.
        problem_of(p.post("/v1/chat/rooms", &bob, json!({"name": "PONG-lovers", "visibility": "public"})).await, 409).await;

        // Members do not moderate; the owner names an admin, who does.
        problem_of(p.delete(&format!("{base}/members/{}", cy.id), &bob).await, 403).await;
        assert_eq!(p.put(&format!("{base}/members/{}/role", bob.id), &ada, json!({"role": "admin"})).await.status(), 204);
        problem_of(p.put(&format!("{base}/members/{}/role", cy.id), &bob, json!({"role": "admin"})).await, 403).await;
        for attack in [
            p.delete(&format!("{base}/members/{}", ada.id), &bob).await,
            p.put(&format!("{base}/bans/{}", ada.id), &bob, json!({})).await,
            p.put(&format!("{base}/members/{}/mute", ada.id), &bob, json!({"seconds": 60})).await,
        ] {
            let doc = problem_of(attack, 403).await;
            assert!(doc["detail"].as_str().unwrap().contains("owner"), "{doc}");
        }

        // Kicked: out, and told so; a public room can be joined again.
        assert_eq!(p.delete(&format!("{base}/members/{}", cy.id), &bob).await.status(), 204);
        let doc = problem_of(p.post(&format!("/v1/chat/conversations/{room}/messages"), &cy, json!({"body": "hi"})).await, 403).await;
        assert!(doc["detail"].as_str().unwrap().contains("not a member"), "{doc}");
        p.json(p.post(&format!("{base}/join"), &cy, json!({})).await, 200).await;

        // Muted: reads but cannot post, until lifted.
        assert_eq!(p.put(&format!("{base}/members/{}/mute", cy.id), &bob, json!({"seconds": 600})).await.status(), 204);
        let doc = problem_of(p.post(&format!("/v1/chat/conversations/{room}/messages"), &cy, json!({"body": "hi"})).await, 403).await;
        assert!(doc["detail"].as_str().unwrap().contains("muted"), "{doc}");
        problem_of(p.put(&format!("{base}/members/{}/mute", cy.id), &bob, json!({"seconds": 0})).await, 422).await;
        assert_eq!(p.delete(&format!("{base}/members/{}/mute", cy.id), &bob).await.status(), 204);
        p.say(&cy, room, "back").await;

        // Banned: out, and cannot come back until the ban is lifted.
        assert_eq!(p.put(&format!("{base}/bans/{}", cy.id), &bob, json!({"reason": "spam"})).await.status(), 204);
        let doc = problem_of(p.post(&format!("{base}/join"), &cy, json!({})).await, 403).await;
        assert!(doc["detail"].as_str().unwrap().contains("banned"), "{doc}");
        problem_of(p.get(&format!("{base}/bans"), &cy).await, 403).await;
        let bans = p.json(p.get(&format!("{base}/bans"), &bob).await, 200).await;
        assert_eq!(bans[0]["reason"], "spam");
        assert_eq!(p.delete(&format!("{base}/bans/{}", cy.id), &bob).await.status(), 204);
        p.json(p.post(&format!("{base}/join"), &cy, json!({})).await, 200).await;

        // Every action is in the room's audit log, newest first.
        let audit = p.json(p.get(&format!("{base}/audit"), &ada).await, 200).await;
        let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["unban", "ban", "unmute", "mute", "kick", "promote"]);
        problem_of(p.get(&format!("{base}/audit"), &cy).await, 403).await;

        // The owner hands the room over before leaving; then may leave.
        problem_of(p.post(&format!("{base}/leave"), &ada, json!({})).await, 409).await;
        assert_eq!(p.put(&format!("{base}/members/{}/role", bob.id), &ada, json!({"role": "owner"})).await.status(), 204);
        assert_eq!(p.post(&format!("{base}/leave"), &ada, json!({})).await.status(), 204);
        let room_view = p.json(p.get(&base, &bob).await, 200).await;
        assert_eq!((room_view["owner_id"].as_str(), room_view["my_role"].as_str(), room_view["members"].as_i64()),
            (Some(bob.id.to_string().as_str()), Some("owner"), Some(2)));
    }

    async fn password_and_private_rooms_keep_strangers_out(db) {
        let p = Platform::start(db).await;
        let (ada, bob, eve) = (p.user("Ada").await, p.user("Bob").await, p.user("Eve").await);
        problem_of(p.post("/v1/chat/rooms", &ada, json!({"name": "vault", "visibility": "password"})).await, 422).await;
        let vault = p.room(&ada, "vault", "password", &[]).await;
        problem_of(p.post(&format!("/v1/chat/rooms/{vault}/join"), &eve, json!({"password": "guess"})).await, 403).await;
        problem_of(p.post(&format!("/v1/chat/rooms/{vault}/join"), &eve, json!({})).await, 403).await;
        p.json(p.post(&format!("/v1/chat/rooms/{vault}/join"), &bob, json!({"password": "let me in"})).await, 200).await;

        let secret = p.room(&ada, "secret", "private", &[]).await;
        // A private room does not exist for strangers: not listed, not seen, not joined.
        problem_of(p.get(&format!("/v1/chat/rooms/{secret}"), &eve).await, 404).await;
        problem_of(p.post(&format!("/v1/chat/rooms/{secret}/join"), &eve, json!({})).await, 404).await;
        problem_of(p.get(&format!("/v1/chat/conversations/{secret}/messages"), &eve).await, 404).await;
        let listed = p.json(p.get("/v1/chat/rooms", &eve).await, 200).await;
        let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["vault"]);
        // Invited: sees it, joins it.
        assert_eq!(p.post(&format!("/v1/chat/rooms/{secret}/invitations"), &ada, json!({"user_id": bob.id})).await.status(), 204);
        let invitations = p.json(p.get("/v1/chat/invitations", &bob).await, 200).await;
        assert_eq!(invitations[0]["room_name"], "secret");
        assert_eq!(invitations[0]["invited_by"]["display_name"], "Ada");
        p.json(p.get(&format!("/v1/chat/rooms/{secret}"), &bob).await, 200).await;
        p.json(p.post(&format!("/v1/chat/rooms/{secret}/join"), &bob, json!({})).await, 200).await;
        assert_eq!(p.json(p.get("/v1/chat/invitations", &bob).await, 200).await, json!([]));
        // Members of a private room do not invite; its admins do.
        problem_of(p.post(&format!("/v1/chat/rooms/{secret}/invitations"), &bob, json!({"user_id": eve.id})).await, 403).await;
    }

    async fn messages_page_both_ways_edit_delete_and_count_unread(db) {
        let p = Platform::start(db).await;
        let (ada, bob) = (p.user("Ada").await, p.user("Bob").await);
        let room = p.room(&ada, "lobby", "public", &[&bob]).await;
        let mut last = Value::Null;
        for n in 1..=7 {
            last = p.say(&ada, room, &format!("message {n}")).await;
        }
        assert_eq!(last["seq"], 7);
        assert_eq!(p.unread(&bob, room).await, 7);
        assert_eq!(p.unread(&ada, room).await, 0, "one's own messages are read");

        let base = format!("/v1/chat/conversations/{room}/messages");
        let latest = p.json(p.get(&format!("{base}?limit=3"), &bob).await, 200).await;
        let seqs = |page: &Value| page["items"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!((seqs(&latest), latest["has_more"].as_bool()), (vec![5, 6, 7], Some(true)));
        let older = p.json(p.get(&format!("{base}?limit=3&before=5"), &bob).await, 200).await;
        assert_eq!(seqs(&older), [2, 3, 4]);
        let oldest = p.json(p.get(&format!("{base}?limit=3&before=2"), &bob).await, 200).await;
        assert_eq!((seqs(&oldest), oldest["has_more"].as_bool()), (vec![1], Some(false)));
        let newer = p.json(p.get(&format!("{base}?limit=4&after=2"), &bob).await, 200).await;
        assert_eq!((seqs(&newer), newer["has_more"].as_bool()), (vec![3, 4, 5, 6], Some(true)));
        for bad in ["?limit=0", "?limit=101", "?before=0", "?after=-1", "?before=3&after=1", "?before=x"] {
            let r = p.get(&format!("{base}{bad}"), &bob).await;
            assert!(r.status() == 422 || r.status() == 400, "{bad}: {}", r.status());
        }

        // Read markers move forward only, and never past the end.
        let marker = p.json(p.put(&format!("/v1/chat/conversations/{room}/read"), &bob, json!({"seq": 5})).await, 200).await;
        assert_eq!(marker["last_read_seq"], 5);
        assert_eq!(p.unread(&bob, room).await, 2);
        let back = p.json(p.put(&format!("/v1/chat/conversations/{room}/read"), &bob, json!({"seq": 2})).await, 200).await;
        assert_eq!(back["last_read_seq"], 5);
        let future = p.json(p.put(&format!("/v1/chat/conversations/{room}/read"), &bob, json!({"seq": 9999})).await, 200).await;
        assert_eq!(future["last_read_seq"], 7);

        // Edit: the author only. Delete: a tombstone keeps the number.
        let id = last["id"].as_str().unwrap();
        problem_of(p.patch(&format!("{base}/{id}"), &bob, json!({"body": "mine now"})).await, 403).await;
        let edited = p.json(p.patch(&format!("{base}/{id}"), &ada, json!({"body": "message 7, edited"})).await, 200).await;
        assert!(edited["edited_at"].is_string());
        problem_of(p.delete(&format!("{base}/{id}"), &bob).await, 403).await;
        assert_eq!(p.delete(&format!("{base}/{id}"), &ada).await.status(), 204);
        let page = p.json(p.get(&format!("{base}?after=6"), &bob).await, 200).await;
        assert_eq!(page["items"][0]["deleted"], true);
        assert_eq!(page["items"][0]["body"], "");
        assert_eq!(page["items"][0]["seq"], 7);
        problem_of(p.patch(&format!("{base}/{id}"), &ada, json!({"body": "undead"})).await, 409).await;

        // Markup is text: stored and returned exactly as written.
        let html = "<script>alert('x')</script> & <b>bold</b>";
        assert_eq!(p.say(&bob, room, html).await["body"], html);
        assert_eq!(p.bodies(&ada, room).await.last().map(String::as_str), Some(html));
        // Bad bodies are refused, nothing written.
        for body in [json!({"body": ""}), json!({"body": "  \n"}), json!({"body": "x".repeat(2001)}), json!({"body": "a\u{0007}"}),
                     json!({"body": 5}), json!({"text": "hi"})] {
            let r = p.post(&base, &bob, body.clone()).await;
            assert!(r.status() == 422 || r.status() == 400, "{body}: {}", r.status());
        }
        assert_eq!(p.bodies(&ada, room).await.len(), 8);
    }

    async fn search_finds_whole_words_in_the_callers_conversations_only(db) {
        let p = Platform::start(db).await;
        let (ada, bob, eve) = (p.user("Ada").await, p.user("Bob").await, p.user("Eve").await);
        let room = p.room(&ada, "lobby", "public", &[&bob]).await;
        let other = p.room(&eve, "elsewhere", "public", &[]).await;
        for body in ["Rematch tonight at NINE?", "the rematch is on", "remote play works", "año nuevo, partida nueva",
                     "<b>rematch</b> in bold"] {
            p.say(&ada, room, body).await;
        }
        p.say(&eve, other, "rematch where ada cannot see").await;
        let deleted = p.say(&ada, room, "rematch to be deleted").await;
        assert_eq!(p.delete(&format!("/v1/chat/conversations/{room}/messages/{}", deleted["id"].as_str().unwrap()), &ada).await.status(), 204);

        let found = |v: Value| v["items"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        let hits = found(p.json(p.get("/v1/chat/search?q=REMATCH", &bob).await, 200).await);
        assert_eq!(hits, ["<b>rematch</b> in bold", "the rematch is on", "Rematch tonight at NINE?"]);
        assert_eq!(found(p.json(p.get("/v1/chat/search?q=rematch%20nine", &bob).await, 200).await), ["Rematch tonight at NINE?"]);
        assert_eq!(found(p.json(p.get("/v1/chat/search?q=a%C3%B1o", &bob).await, 200).await), ["año nuevo, partida nueva"]);
        assert!(found(p.json(p.get("/v1/chat/search?q=rem", &bob).await, 200).await).is_empty(), "whole words only");
        assert!(found(p.json(p.get("/v1/chat/search?q=b", &eve).await, 200).await).is_empty(), "not Eve's conversation");
        // Query syntax of either database is just words here.
        for q in ["rematch%20OR%20remote", "%22rematch", "rematch*", "rematch%20%26%20!nine", "NEAR(rematch)"] {
            p.json(p.get(&format!("/v1/chat/search?q={q}"), &bob).await, 200).await;
        }
        let page1 = p.json(p.get("/v1/chat/search?q=rematch&limit=2", &bob).await, 200).await;
        let cursor = page1["next_cursor"].as_str().unwrap();
        assert_eq!(found(p.json(p.get(&format!("/v1/chat/search?q=rematch&limit=2&cursor={cursor}"), &bob).await, 200).await),
            ["Rematch tonight at NINE?"]);
        for bad in ["", "?q=", "?q=%20%21%21", "?q=rematch&limit=0"] {
            problem_of(p.get(&format!("/v1/chat/search{bad}"), &bob).await, if bad.is_empty() { 400 } else { 422 }).await;
        }
    }

    async fn blocks_are_honoured_on_the_server(db) {
        let p = Platform::start(db).await;
        let (ada, bob, cy) = (p.user("Ada").await, p.user("Bob").await, p.user("Cy").await);
        let room = p.room(&ada, "lobby", "public", &[&bob, &cy]).await;
        let dm = p.json(p.post(&format!("/v1/chat/direct/{}", bob.id), &ada, json!({})).await, 201).await;
        let dm: Uuid = dm["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(p.post(&format!("/v1/chat/direct/{}", bob.id), &ada, json!({})).await.status(), 200, "the same one");
        p.say(&ada, dm, "hello Bob").await;

        p.block(&bob, &ada).await;
        // A direct message to someone who blocked you is refused.
        let doc = problem_of(p.post(&format!("/v1/chat/conversations/{dm}/messages"), &ada, json!({"body": "hello?"})).await, 403).await;
        assert!(doc["detail"].as_str().unwrap().contains("does not accept"), "{doc}");
        problem_of(p.post(&format!("/v1/chat/direct/{}", bob.id), &ada, json!({})).await, 403).await;

        // In a room: Ada's message is delivered to everyone but Bob…
        let mut watch = p.watch().await;
        p.say(&ada, room, "can Bob see this?").await;
        let publication = next_on(&mut watch, &format!("chat:{room}"), "message").await;
        assert_eq!(publication.data["message"]["body"], "can Bob see this?");
        assert_eq!(publication.skip_users, [bob.id]);
        // …left out of his history, his unread count and his search…
        assert!(!p.bodies(&bob, room).await.contains(&"can Bob see this?".to_owned()));
        assert!(p.bodies(&cy, room).await.contains(&"can Bob see this?".to_owned()));
        assert_eq!(p.unread(&bob, room).await, 0);
        assert_eq!(p.unread(&cy, room).await, 1);
        let hits = p.json(p.get("/v1/chat/search?q=bob%20see", &bob).await, 200).await;
        assert_eq!(hits["items"], json!([]));
        // …and so is her typing.
        assert_eq!(p.post(&format!("/v1/chat/conversations/{room}/typing"), &ada, json!({})).await.status(), 204);
        let typing = next_on(&mut watch, &format!("chat:{room}"), "typing").await;
        assert_eq!((typing.data["type"].as_str(), typing.ephemeral, typing.skip_users.clone()), (Some("typing"), true, vec![bob.id]));
        // Her invitations do not reach him either (and she is not told).
        let secret = p.room(&ada, "secret", "private", &[]).await;
        assert_eq!(p.post(&format!("/v1/chat/rooms/{secret}/invitations"), &ada, json!({"user_id": bob.id})).await.status(), 204);
        assert_eq!(p.json(p.get("/v1/chat/invitations", &bob).await, 200).await, json!([]));
    }

    async fn limits_answer_429_with_retry_after(db) {
        let p = Platform::with_config(db, "[chat]\nmessages_per_minute = 6\nmessage_burst = 3\nrooms_per_user = 2\n").await;
        let (ada, bob) = (p.user("Ada").await, p.user("Bob").await);
        let room = p.room(&ada, "one", "public", &[&bob]).await;
        for n in 0..3 {
            p.say(&bob, room, &format!("{n}")).await;
        }
        let r = p.post(&format!("/v1/chat/conversations/{room}/messages"), &bob, json!({"body": "one too many"})).await;
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=10).contains(&retry), "{retry}");
        problem_of(r, 429).await;
        assert_eq!(p.bodies(&ada, room).await.len(), 3, "nothing half-written");

        // Slow mode: one message per member per interval; admins are exempt.
        problem_of(p.patch(&format!("/v1/chat/rooms/{room}"), &bob, json!({"slow_mode_secs": 30})).await, 403).await;
        p.json(p.patch(&format!("/v1/chat/rooms/{room}"), &ada, json!({"slow_mode_secs": 30})).await, 200).await;
        let cy = p.user("Cy").await;
        p.json(p.post(&format!("/v1/chat/rooms/{room}/join"), &cy, json!({})).await, 200).await;
        p.say(&cy, room, "first").await;
        let r = p.post(&format!("/v1/chat/conversations/{room}/messages"), &cy, json!({"body": "second"})).await;
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((29..=30).contains(&retry), "{retry}");
        let doc = problem_of(r, 429).await;
        assert!(doc["detail"].as_str().unwrap().contains("slow mode"), "{doc}");
        p.say(&ada, room, "owners are not slowed").await;
        p.say(&ada, room, "at all").await;

        // Rooms per user.
        p.room(&ada, "two", "public", &[]).await;
        let doc = problem_of(p.post("/v1/chat/rooms", &ada, json!({"name": "three", "visibility": "public"})).await, 422).await;
        assert!(doc["detail"].as_str().unwrap().contains("2 rooms"), "{doc}");
    }

    async fn a_message_and_its_delivery_are_one_change(db) {
        let p = Platform::start(db).await;
        let (ada, bob) = (p.user("Ada").await, p.user("Bob").await);
        let room = p.room(&ada, "lobby", "public", &[&bob]).await;
        let mut watch = p.watch().await;
        let mut posted = p.ctx.watch::<contracts::chat::MessagePosted>().await;
        let sent = p.say(&ada, room, "in order").await;
        let publication = next_on(&mut watch, &format!("chat:{room}"), "message").await;
        assert_eq!(publication.data["message"], sent, "the socket gets what HTTP answered");
        assert!(!publication.ephemeral);
        let (_, event) = posted.next().await;
        assert_eq!((event.conversation_id, event.seq, event.author_id, event.recipients.clone()), (room, 1, Some(ada.id), vec![bob.id]));

        // Edits, deletions and moderation reach the room the same way.
        let id = sent["id"].as_str().unwrap();
        p.json(p.patch(&format!("/v1/chat/conversations/{room}/messages/{id}"), &ada, json!({"body": "edited"})).await, 200).await;
        assert_eq!(next_on(&mut watch, &format!("chat:{room}"), "message_edited").await.data["message"]["body"], "edited");
        assert_eq!(p.delete(&format!("/v1/chat/rooms/{room}/members/{}", bob.id), &ada).await.status(), 204);
        assert_eq!(next_on(&mut watch, &format!("chat:{room}"), "member_kicked").await.data["user_id"], bob.id.to_string());
        assert_eq!(next_on(&mut watch, &format!("user:{}", bob.id), "member_kicked").await.data["conversation_id"], room.to_string());
    }

    async fn realtime_grants_members_only_and_rpc_matches_http(db) {
        let p = Platform::start(db).await;
        let (ada, eve) = (p.user("Ada").await, p.user("Eve").await);
        let room = p.room(&ada, "lobby", "private", &[]).await;
        assert_eq!(p.get(&format!("/v1/chat/realtime/channels/chat:{room}"), &ada).await.status(), 204);
        for channel in [format!("chat:{room}"), "chat:nope".to_owned(), format!("game:{room}")] {
            problem_of(p.get(&format!("/v1/chat/realtime/channels/{channel}"), &eve).await, 404).await;
        }
        let sent = p.json(p.post("/v1/chat/rpc/send", &ada, json!({"conversation_id": room, "body": "over the socket"})).await, 200).await;
        assert_eq!((sent["seq"].as_i64(), sent["author"]["display_name"].as_str()), (Some(1), Some("Ada")));
        assert_eq!(p.json(p.post("/v1/chat/rpc/read", &ada, json!({"conversation_id": room, "seq": 1})).await, 200).await["last_read_seq"], 1);
        assert_eq!(p.json(p.post("/v1/chat/rpc/typing", &ada, json!({"conversation_id": room})).await, 200).await, json!({}));
        problem_of(p.post("/v1/chat/rpc/send", &eve, json!({"conversation_id": room, "body": "let me in"})).await, 404).await;
        problem_of(p.post("/v1/chat/rpc/launch", &ada, json!({})).await, 404).await;
        problem_of(p.post("/v1/chat/rpc/send", &ada, json!({"conversation_id": "x"})).await, 422).await;
    }

    async fn services_post_cards_whose_actions_stay_inside_panal(db) {
        let p = Platform::start(db).await;
        let (ada, bob) = (p.user("Ada").await, p.user("Bob").await);
        let mut claims = p.issuer.claims(Uuid::now_v7(), &[]);
        claims.sid = None;
        claims.client_id = Some("game".into());
        claims.scope = Some("chat:post".into());
        let game = User { id: claims.sub, token: p.issuer.sign(&claims) };
        let card = json!({"type": "game_invitation", "title": "Ada invites you to a match", "reference": "inv-1",
            "fields": [{"label": "Points to win", "value": "11"}],
            "actions": [{"name": "accept", "label": "Play", "method": "POST", "href": "/v1/game/invitations/inv-1/accept"},
                        {"name": "decline", "label": "No thanks", "method": "POST", "href": "/v1/game/invitations/inv-1/decline"}]});
        let body = json!({"between": [ada.id, bob.id], "on_behalf_of": ada.id, "text": "Ada invites you to a match", "card": card});
        let posted = p.json(p.post("/v1/chat/service/messages", &game, body.clone()).await, 201).await;
        assert_eq!((posted["kind"].as_str(), posted["author"]["display_name"].as_str()), (Some("card"), Some("Ada")));
        assert_eq!(posted["card"]["actions"][0]["href"], "/v1/game/invitations/inv-1/accept");
        let conversation: Uuid = posted["conversation_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(p.bodies(&bob, conversation).await, ["Ada invites you to a match"]);

        // A card cannot send anyone outside Panal's API.
        for href in ["https://evil.example/phish", "//evil.example", "/v1/../admin", "javascript:alert(1)"] {
            let mut bad = body.clone();
            bad["card"]["actions"][0]["href"] = json!(href);
            problem_of(p.post("/v1/chat/service/messages", &game, bad).await, 422).await;
        }
        // Users cannot post cards; a service needs the scope.
        problem_of(p.post("/v1/chat/service/messages", &ada, body.clone()).await, 403).await;
        let mut no_scope = claims.clone();
        no_scope.scope = Some("realtime:publish".into());
        let other = User { id: no_scope.sub, token: p.issuer.sign(&no_scope) };
        problem_of(p.post("/v1/chat/service/messages", &other, body.clone()).await, 403).await;
        // A blocked inviter's cards do not reach the blocker.
        p.block(&bob, &ada).await;
        problem_of(p.post("/v1/chat/service/messages", &game, body).await, 403).await;
    }

    async fn reports_reach_moderators_and_everything_is_exported_or_erased(db) {
        let p = Platform::start(db).await;
        let (ada, bob, mo) = (p.user("Ada").await, p.user("Bob").await, p.user("Mo").await);
        let room = p.room(&ada, "lobby", "public", &[&bob]).await;
        let rude = p.say(&bob, room, "something rude").await;
        let mid = rude["id"].as_str().unwrap();
        let base = format!("/v1/chat/conversations/{room}/messages/{mid}");
        p.json(p.post(&format!("{base}/reports"), &ada, json!({"reason": "insults"})).await, 201).await;
        problem_of(p.post(&format!("{base}/reports"), &ada, json!({"reason": " "})).await, 422).await;
        problem_of(p.get("/v1/chat/moderation/reports", &ada).await, 403).await;
        let mo = p.with_roles(&mo, &["moderator"]);
        let reports = p.json(p.get("/v1/chat/moderation/reports", &mo).await, 200).await;
        let report = reports["items"][0]["id"].as_str().unwrap().to_owned();
        // A moderator who is not in the room removes the message; audited.
        assert_eq!(p.delete(&base, &mo).await.status(), 204);
        assert_eq!(p.post(&format!("/v1/chat/moderation/reports/{report}/resolve"), &mo, json!({"resolution": "removed"})).await.status(), 204);
        problem_of(p.post(&format!("/v1/chat/moderation/reports/{report}/resolve"), &mo, json!({"resolution": "again"})).await, 404).await;
        let audit = p.json(p.get("/v1/chat/moderation/audit", &mo).await, 200).await;
        let actions: Vec<&str> = audit["items"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["resolve_report", "delete_message"]);
        assert_eq!(p.json(p.get("/v1/chat/moderation/reports", &mo).await, 200).await["items"], json!([]));

        // Export: what chat holds about the caller.
        p.say(&ada, room, "mine").await;
        let export = p.json(p.get("/v1/chat/me/export", &ada).await, 200).await;
        assert_eq!(export["messages"][0]["body"], "mine");
        assert_eq!(export["conversations"][0]["role"], "owner");
        assert_eq!(export["reports"][0]["reason"], "insults");

        // Erasure: Ada's messages stay, under no name; her room passes on.
        p.erase(&ada).await;
        let page = p.json(p.get(&format!("/v1/chat/conversations/{room}/messages"), &bob).await, 200).await;
        let last = page["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((last["body"].as_str(), last["author"]["display_name"].as_str()), (Some("mine"), Some("deleted user")));
        let view = p.json(p.get(&format!("/v1/chat/rooms/{room}"), &bob).await, 200).await;
        assert_eq!((view["my_role"].as_str(), view["members"].as_i64()), (Some("owner"), Some(1)));
        let export = p.json(p.get("/v1/chat/me/export", &bob).await, 200).await;
        assert_eq!(export["conversations"][0]["role"], "owner");
    }
}
