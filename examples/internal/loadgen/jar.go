package loadgen

import (
	"net/http"
	"net/url"
	"sync"
	"time"
)

// jar is the cookie jar of one simulated browser talking to one origin (the
// load generator sends every request to one base URL), so it needs none of
// net/http/cookiejar's domain and path matching, whose cost would be the
// load generator's, not the server's. It keeps each cookie by name, and
// forgets one that is deleted (Max-Age < 0) or has expired. It is safe for
// concurrent use, as http.CookieJar requires.
type jar struct {
	mu      sync.Mutex
	cookies map[string]string // guards: cookie values by name
}

var _ http.CookieJar = (*jar)(nil)

func newJar() *jar { return &jar{cookies: map[string]string{}} }

func (j *jar) SetCookies(_ *url.URL, cookies []*http.Cookie) {
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range cookies {
		if c.MaxAge < 0 || (c.MaxAge == 0 && !c.Expires.IsZero() && !c.Expires.After(now)) {
			delete(j.cookies, c.Name)
			continue
		}
		j.cookies[c.Name] = c.Value
	}
}

func (j *jar) Cookies(*url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]*http.Cookie, 0, len(j.cookies))
	for name, value := range j.cookies {
		out = append(out, &http.Cookie{Name: name, Value: value})
	}
	return out
}
