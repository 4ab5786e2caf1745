-- Patient registry: a search key for names, a real address (GSO commune code), health insurance,
-- merges that keep history, and the indexes that make search fast on a million patients.

ALTER TABLE patient
    ADD COLUMN search_name text,
    ADD COLUMN address_commune_code text CHECK (address_commune_code ~ '^[0-9]{5}$'),
    ADD COLUMN address_detail text NOT NULL DEFAULT '' CHECK (length(address_detail) <= 200),
    ADD COLUMN insurance_number text CHECK (insurance_number ~ '^([0-9]{10}|[A-Z]{2}[1-5][0-9]{12})$'),
    ADD COLUMN merged_into bigint REFERENCES patient (id) CHECK (merged_into <> id),
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- The SQL twin of care.text.normalize (casefold, strip diacritics, đ → d, collapse spaces). The app
-- writes normalize() itself; this fills rows written by plain SQL (demo data, older code paths) so that
-- search never misses a patient. unaccent() maps Vietnamese letters as normalize() does, except đ/Đ.
CREATE FUNCTION patient_search_key(name text) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT btrim(regexp_replace(lower(unaccent(translate(name, 'đĐ', 'dD'))), '\s+', ' ', 'g'))
$$;

-- Mobile numbers are stored in E.164 (+84…): what the app's parser returns and SMS gateways take.
-- A national form (0912345678) written by plain SQL is converted, so duplicate checks compare like
-- with like; anything else is left as it was typed.
CREATE FUNCTION patient_e164(phone text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN phone ~ '^0[35789][0-9]{8}$' THEN '+84' || substr(phone, 2) ELSE phone END
$$;

CREATE FUNCTION patient_fill_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.search_name IS NULL
       OR (TG_OP = 'UPDATE' AND NEW.name IS DISTINCT FROM OLD.name AND NEW.search_name = OLD.search_name) THEN
        NEW.search_name := patient_search_key(NEW.name);
    END IF;
    NEW.phone := patient_e164(NEW.phone);
    RETURN NEW;
END $$;

CREATE TRIGGER patient_fill_keys BEFORE INSERT OR UPDATE ON patient
    FOR EACH ROW EXECUTE FUNCTION patient_fill_keys();

UPDATE patient SET search_name = patient_search_key(name), phone = patient_e164(phone);
ALTER TABLE patient ALTER COLUMN search_name SET NOT NULL;

-- Word-start and typo-tolerant matches (LIKE '% an%', similarity %) use the trigram index; whole-name
-- prefixes ("nguyen van") use the btree, in order, so a type-ahead stops after the first rows.
CREATE INDEX patient_search_trgm ON patient USING gin (search_name gin_trgm_ops);
CREATE INDEX patient_search_prefix ON patient (search_name text_pattern_ops);
CREATE INDEX patient_phone_prefix ON patient (phone text_pattern_ops);
CREATE INDEX patient_national_id ON patient (national_id) WHERE national_id IS NOT NULL;
CREATE INDEX patient_merged_into ON patient (merged_into) WHERE merged_into IS NOT NULL;
