// Package frontend is the TEST STAND-IN for the React chatbot frontend
// (react-frontend:1.0.0, a static build served by nginx): every GET path
// answers the same small HTML page, like a single-page app's fallback.
package frontend

import (
	"net/http"

	"ai-stack.local/standins/internal/httpx"
)

// Page is the HTML served for every GET.
const Page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>AI chatbot (TEST STAND-IN)</title>
</head>
<body>
<h1>AI chatbot</h1>
<p>TEST STAND-IN for the React chatbot frontend (react-frontend:1.0.0); not the real app.</p>
</body>
</html>
`

// Handler serves Page for any GET (and HEAD) path, with request logging.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write([]byte(Page))
	})
	return httpx.LogRequests(mux)
}
