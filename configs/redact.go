package configs

import (
	"errors"
	"net/url"
	"slices"
	"strings"
)

// mask replaces every password braid prints.
const mask = "xxxxx"

// RedactDSN returns dsn with its passwords replaced by xxxxx: the userinfo
// password of a URL (postgres://user:xxxxx@host/db), password and sslpassword
// query parameters, and password/sslpassword values in keyword/value form
// (host=h password=xxxxx). Malformed input is redacted generously rather than
// precisely: whatever cannot be parsed is masked as a whole, so no error
// message can show a password that a typo moved out of its place.
func RedactDSN(dsn string) string {
	redacted, _ := redactDSN(dsn)
	return redacted
}

// redactDSN returns the redacted DSN and the secrets it masked.
func redactDSN(dsn string) (string, []string) {
	if i := strings.Index(dsn, "://"); i >= 0 {
		return redactURL(dsn[:i+3], dsn[i+3:])
	}
	return redactKeywordValue(dsn)
}

// redactURL redacts the part of a URL after "scheme://".
func redactURL(prefix, rest string) (string, []string) {
	var b strings.Builder
	var secrets []string
	b.WriteString(prefix)

	// The userinfo ends at the last '@': a password with an unencoded '@' or
	// '/' must still be masked whole, at the cost of over-masking when an '@'
	// appears in a query value.
	at := strings.LastIndexByte(rest, '@')
	if at >= 0 {
		userinfo := rest[:at]
		if user, pass, ok := strings.Cut(userinfo, ":"); ok {
			b.WriteString(user)
			b.WriteString(":" + mask)
			secrets = append(secrets, pass)
		} else {
			b.WriteString(userinfo)
		}
		b.WriteByte('@')
		rest = rest[at+1:]
	}

	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	hosts, tail := rest[:end], rest[end:]
	// Without an '@' there is no userinfo, but a typo can leave "user:password"
	// where host:port belongs; then a port that is not a number is masked.
	for i, hp := range strings.Split(hosts, ",") {
		if i > 0 {
			b.WriteByte(',')
		}
		host, port, ok := cutPort(hp)
		if at < 0 && ok && port != "" && !isDigits(port) {
			b.WriteString(host + ":" + mask)
			secrets = append(secrets, port)
			continue
		}
		b.WriteString(hp)
	}

	path, query, hasQuery := strings.Cut(tail, "?")
	b.WriteString(path)
	if hasQuery {
		b.WriteByte('?')
		for i, pair := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			key, value, ok := strings.Cut(pair, "=")
			if decoded, err := url.QueryUnescape(key); err == nil {
				key = decoded
			}
			if ok && isSecretKey(key) {
				b.WriteString(pair[:len(pair)-len(value)] + mask)
				secrets = append(secrets, value)
				continue
			}
			b.WriteString(pair)
		}
	}
	return b.String(), secrets
}

// cutPort splits "host:port", leaving a bracketed IPv6 host whole.
func cutPort(hp string) (host, port string, ok bool) {
	i := strings.LastIndexByte(hp, ':')
	if i < 0 || strings.LastIndexByte(hp, ']') > i {
		return hp, "", false
	}
	return hp[:i], hp[i+1:], true
}

func isDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isSecretKey(key string) bool {
	key = strings.ToLower(strings.TrimSpace(key))
	return key == "password" || key == "sslpassword"
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// redactKeywordValue redacts a keyword/value connection string the way pgx
// reads one: key = value pairs separated by whitespace, values optionally
// single-quoted, backslash escapes. From the first thing it cannot read, it
// masks the rest of the string.
func redactKeywordValue(s string) (string, []string) {
	var b strings.Builder
	var secrets []string
	maskRest := func(rest string) (string, []string) {
		b.WriteString(mask)
		// Error messages quote single words of a malformed string ("missing
		// = after %q"), so each word is a secret too.
		secrets = append(secrets, rest)
		secrets = append(secrets, strings.FieldsFunc(rest, func(r rune) bool {
			return r == '=' || r == '\'' || (r < 0x80 && isSpace(byte(r)))
		})...)
		return b.String(), secrets
	}

	i := 0
	for {
		start := i
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		b.WriteString(s[start:i])
		if i == len(s) {
			return b.String(), secrets
		}

		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 {
			return maskRest(s[i:])
		}
		key := strings.TrimRight(s[i:i+eq], " \t\n\r\v\f")
		if strings.IndexFunc(key, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }) >= 0 {
			return maskRest(s[i:])
		}
		b.WriteString(s[i : i+eq+1])
		i += eq + 1
		start = i
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		b.WriteString(s[start:i])

		start = i
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return maskRest(s[start:])
			}
			i++ // the closing quote
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			i = min(i, len(s))
		}
		value := s[start:i]
		if isSecretKey(key) {
			b.WriteString(mask)
			secrets = append(secrets, value, strings.Trim(value, "'"))
			continue
		}
		b.WriteString(value)
	}
}

// secretsIn finds text in password positions anywhere in s, whatever field it
// sits in: the part between a ':' and a later '@' within one word (URL
// userinfo), and the value after password= or sslpassword=. It over-collects
// on purpose; the result only ever removes text from error messages.
func secretsIn(s string) []string {
	var out []string
	for at := 0; ; {
		i := strings.IndexByte(s[at:], '@')
		if i < 0 {
			break
		}
		at += i
		// Walk back through the word before '@', remembering every ':'.
		for j := at - 1; j >= 0 && !isSpace(s[j]) && s[j] != '/' && s[j] != '\'' && s[j] != '"'; j-- {
			if s[j] == ':' {
				out = append(out, s[j+1:at])
			}
		}
		at++
	}

	lower := strings.ToLower(s)
	for from := 0; ; {
		i := strings.Index(lower[from:], "password")
		if i < 0 {
			break
		}
		j := from + i + len("password")
		from = j
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if j >= len(s) || s[j] != '=' {
			continue
		}
		j++
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		k := j
		if k < len(s) && s[k] == '\'' {
			k++
			for k < len(s) && s[k] != '\'' {
				k++
			}
			out = append(out, s[j+1:k])
			continue
		}
		for k < len(s) && !isSpace(s[k]) && s[k] != '&' && s[k] != '\'' && s[k] != '"' {
			k++
		}
		out = append(out, s[j:k])
	}
	return out
}

// minSecret is the shortest secret scrub removes from messages: replacing
// every "a" in a message would destroy it and protect nothing.
const minSecret = 3

// scrubber removes known secrets from error messages.
type scrubber struct {
	secrets []string // longest first
}

func (s *scrubber) add(secrets ...string) {
	for _, secret := range secrets {
		candidates := []string{secret}
		if decoded, err := url.PathUnescape(secret); err == nil && decoded != secret {
			candidates = append(candidates, decoded)
		}
		for _, c := range candidates {
			if len(c) >= minSecret && !slices.Contains(s.secrets, c) {
				s.secrets = append(s.secrets, c)
			}
		}
	}
	slices.SortFunc(s.secrets, func(a, b string) int { return len(b) - len(a) })
}

func (s *scrubber) scrub(msg string) string {
	for _, secret := range s.secrets {
		msg = strings.ReplaceAll(msg, secret, mask)
	}
	return msg
}

// join scrubs every problem and joins them; nil when there are none.
func (s *scrubber) join(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = errors.New(s.scrub(p))
	}
	return errors.Join(errs...)
}
