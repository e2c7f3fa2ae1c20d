"""The application's commands and reads, one module per area, composed into ``PocDirectory``
(``domain.application``): the entries, the exchanges (notifications and consents), the
credentials, and the review of the provisional operation. ``base`` holds what every area
shares: configuration, the codec, loading, the one load-change-save helper and saving."""
