package contenders

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gin-contrib/sessions"
	"github.com/gin-contrib/sessions/memcached"
	"github.com/gin-gonic/gin"
)

// GinMemcached is github.com/gin-contrib/sessions with its memcached store
// (gorilla-sessions-memcache underneath, over gomemcache) on a bare
// gin.Engine: release mode, no logger or recovery middleware, only the
// sessions middleware. gin.Engine is an http.Handler. As for
// gorilla/memcache, securecookie's 4096-byte limit is lifted so a 4 KB cart
// can be stored.
//
// gin-contrib/sessions logs a failed load (slog) and hands the handler an
// empty session instead of an error, so a lost session reads as an empty
// cart here.
func GinMemcached() Contender {
	return Contender{Name: "gin/memcached", Memcached: true, New: func(nodes []string) (http.Handler, func(), error) {
		if len(nodes) == 0 {
			return nil, nil, errors.New("gin/memcached: no memcached nodes")
		}
		gin.SetMode(gin.ReleaseMode) // global; it only silences debug output
		store := memcached.NewStore(newMemcacheClient(nodes), "gin:", secretKey)
		// The store embeds *gsm.MemcacheStore, whose MaxLength is promoted.
		if s, ok := store.(interface{ MaxLength(int) }); ok {
			s.MaxLength(0)
		} else {
			return nil, nil, errors.New("gin/memcached: store has no MaxLength")
		}
		e := gin.New()
		e.Use(sessions.Sessions(sessionName, store))
		e.POST("/login", func(c *gin.Context) {
			s := sessions.Default(c)
			s.Set("cart", Cart(itemsParam(c.Request)))
			if err := s.Save(); err != nil {
				http.Error(c.Writer, err.Error(), http.StatusInternalServerError)
			}
		})
		e.GET("/read", func(c *gin.Context) {
			cart, _ := sessions.Default(c).Get("cart").([]string)
			c.Writer.Write([]byte(strconv.Itoa(len(cart))))
		})
		e.POST("/write", func(c *gin.Context) {
			s := sessions.Default(c)
			cart, _ := s.Get("cart").([]string)
			s.Set("cart", Changed(cart))
			if err := s.Save(); err != nil {
				http.Error(c.Writer, err.Error(), http.StatusInternalServerError)
				return
			}
			c.Writer.Write([]byte("ok"))
		})
		return e, func() {}, nil
	}}
}
