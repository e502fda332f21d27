-- Rate limit, regstack, one hot key: its window fills up (max 1,000,000
-- events per hour, so every call is allowed and recorded).
SELECT remaining FROM regstack.rate_limit_check('hot', 'login_attempt',
    max_events => 1000000, within => '1 hour') WHERE allowed \gset
