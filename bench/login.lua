-- POST the same credentials again and again.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"correct horse battery staple"}'
