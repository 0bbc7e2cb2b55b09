package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
)

// cookieSecretEnv is the environment variable -cookie-secret defaults to.
const cookieSecretEnv = "SCSLOGIN_COOKIE_SECRET"

// cookieName is the session cookie's name, scs's default.
const cookieName = "session"

// cookieSession is the whole session of -store cookie, kept by the
// browser in the cookie, encrypted (AES-256-CTR) and signed (HMAC-SHA256)
// by gorilla/securecookie. The servers keep nothing: every server with the
// same secret reads every cookie, and logging out only asks the browser to
// drop it (a copy of the cookie stays valid until it expires).
type cookieSession struct {
	User   string `json:"u"`
	Visits int    `json:"v"`
	Login  int64  `json:"l"` // Unix seconds: the session ends Lifetime after it
}

// cookieApp serves the login application's contract with the session in
// the cookie (scs cannot keep a session there). securecookie stamps every
// cookie with the time it was encoded and refuses older ones than its
// MaxAge: with an idle timeout the cookie is written anew on every
// request, as scs writes the session back to its store, and MaxAge is the
// idle timeout.
type cookieApp struct {
	*app
	codec                 *securecookie.SecureCookie
	idleTimeout, lifetime time.Duration
	secure                bool
}

// newCookieApp derives the signing and encryption keys from secret (hex,
// at least 32 bytes).
func newCookieApp(a *app, secretHex string, o options) (*cookieApp, error) {
	secret, err := hex.DecodeString(secretHex)
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("-cookie-secret (or $%s) must be at least 32 bytes in hex", cookieSecretEnv)
	}
	hashKey := sha256.Sum256(append([]byte("scslogin cookie signing key\x00"), secret...))
	blockKey := sha256.Sum256(append([]byte("scslogin cookie encryption key\x00"), secret...))
	codec := securecookie.New(hashKey[:], blockKey[:]).SetSerializer(securecookie.JSONEncoder{})
	maxAge := o.idleTimeout
	if maxAge == 0 {
		maxAge = o.lifetime
	}
	codec.MaxAge(int(maxAge / time.Second))
	return &cookieApp{app: a, codec: codec, idleTimeout: o.idleTimeout, lifetime: o.lifetime, secure: o.cookieSecure}, nil
}

// routes returns the same endpoints as app.routes.
func (c *cookieApp) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.index)
	mux.HandleFunc("POST /login", c.login)
	mux.HandleFunc("GET /me", c.me)
	mux.HandleFunc("POST /visit", c.visit)
	mux.HandleFunc("POST /logout", c.logout)
	mux.HandleFunc("GET /healthz", c.healthz)
	return mux
}

// load returns the request's session, or nil when it has none that is
// valid.
func (c *cookieApp) load(r *http.Request) *cookieSession {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	var s cookieSession
	if err := c.codec.Decode(cookieName, ck.Value, &s); err != nil {
		return nil
	}
	if time.Since(time.Unix(s.Login, 0)) >= c.lifetime {
		return nil
	}
	return &s
}

// save sets the cookie holding s.
func (c *cookieApp) save(w http.ResponseWriter, s *cookieSession) error {
	v, err := c.codec.Encode(cookieName, s)
	if err != nil {
		return fmt.Errorf("encode session cookie: %w", err)
	}
	ck := &http.Cookie{Name: cookieName, Value: v, Path: "/", HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode}
	if c.idleTimeout == 0 { // a session cookie ends with the browser unless it is kept
		ck.Expires = time.Unix(s.Login, 0).Add(c.lifetime)
	}
	http.SetCookie(w, ck)
	return nil
}

func (c *cookieApp) login(w http.ResponseWriter, r *http.Request) {
	user, password := r.PostFormValue("user"), r.PostFormValue("password")
	if user == "" || len(user) > 256 || password != "demo" {
		c.reply(w, http.StatusUnauthorized, map[string]any{"error": "wrong user or password"})
		return
	}
	if err := c.save(w, &cookieSession{User: user, Login: time.Now().Unix()}); err != nil {
		c.fail(w, err)
		return
	}
	c.reply(w, http.StatusOK, map[string]any{"user": user})
}

func (c *cookieApp) me(w http.ResponseWriter, r *http.Request) {
	s := c.load(r)
	if s == nil {
		c.reply(w, http.StatusUnauthorized, map[string]any{"error": "not logged in"})
		return
	}
	if c.idleTimeout > 0 { // move the idle expiry
		if err := c.save(w, s); err != nil {
			c.fail(w, err)
			return
		}
	}
	c.reply(w, http.StatusOK, map[string]any{"user": s.User, "visits": s.Visits})
}

func (c *cookieApp) visit(w http.ResponseWriter, r *http.Request) {
	s := c.load(r)
	if s == nil {
		c.reply(w, http.StatusUnauthorized, map[string]any{"error": "not logged in"})
		return
	}
	s.Visits++
	if err := c.save(w, s); err != nil {
		c.fail(w, err)
		return
	}
	c.reply(w, http.StatusOK, map[string]any{"user": s.User, "visits": s.Visits})
}

// logout asks the browser to drop the cookie. Nothing on the servers
// remembers it: a copy kept elsewhere still works until it expires.
func (c *cookieApp) logout(w http.ResponseWriter, _ *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.secure})
	c.reply(w, http.StatusOK, map[string]any{"logged_out": true})
}

// healthz is always 200: there is no store to ask.
func (c *cookieApp) healthz(w http.ResponseWriter, _ *http.Request) {
	c.reply(w, http.StatusOK, map[string]any{"ready": true})
}

// errNoCookieSecret is returned for -store cookie without a secret.
var errNoCookieSecret = errors.New("-store cookie needs -cookie-secret or $" + cookieSecretEnv + " (hex, at least 32 bytes; the same on every server)")
